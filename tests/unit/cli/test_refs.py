import pytest

from llmops.cli.errors import Mistake
from llmops.cli.refs import parse_ref
from schemas.prompts import PromptAddress, parse_prompt_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("greet", PromptAddress(name="greet")),
        ("greet@3", PromptAddress(name="greet", version=3)),
        ("greet@production", PromptAddress(name="greet", label="production")),
        (" team/greet.v2@staging ", PromptAddress(name="team/greet.v2", label="staging")),
        ("greet@v2", PromptAddress(name="greet", label="v2")),  # digits only are a version
        (f"greet@{2**32 - 1}", PromptAddress(name="greet", version=2**32 - 1)),
    ],
)
def test_references_split_into_name_and_version_or_label(
    text: str, expected: PromptAddress
) -> None:
    assert parse_ref(text) == expected
    assert str(parse_ref(text)) == text.strip()


@pytest.mark.parametrize(
    "text",
    ["", "@3", "greet@", "greet@@", "greet@a@b", "gr eet", "g\x00", "g\n@1", "p" * 129, "p@é"],
)
def test_a_malformed_reference_is_a_mistake(text: str) -> None:
    with pytest.raises(Mistake, match="not a prompt reference"):
        parse_ref(text)


@pytest.mark.parametrize("text", ["greet@0", f"greet@{2**32}", "greet@" + "9" * 40])
def test_a_version_outside_the_contract_is_a_mistake(text: str) -> None:
    with pytest.raises(Mistake, match="a version is a number from 1 to 4294967295"):
        parse_ref(text)


def test_an_address_built_directly_is_bounded_too() -> None:
    with pytest.raises(ValueError, match="less than or equal to 4294967295"):
        PromptAddress(name="greet", version=2**63)
    with pytest.raises(ValueError):
        PromptAddress(name="gr eet")


def test_where_the_at_is_required_a_bare_name_is_refused() -> None:
    assert parse_prompt_address("greet") == PromptAddress(name="greet")
    with pytest.raises(ValueError, match="give the prompt as NAME@VERSION or NAME@LABEL"):
        parse_prompt_address("greet", at_required=True)
