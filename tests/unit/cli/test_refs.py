import pytest

from llmops.cli.errors import Mistake
from llmops.cli.refs import parse_ref, version_or_label


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("greet", ("greet", None)),
        ("greet@3", ("greet", "3")),
        ("greet@production", ("greet", "production")),
        (" team/greet.v2@staging ", ("team/greet.v2", "staging")),
    ],
)
def test_references_split_into_name_and_what_follows_the_at(
    text: str, expected: tuple[str, str | None]
) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["", "@3", "greet@", "greet@@", "greet@a@b", "gr eet", "g\x00"])
def test_a_malformed_reference_is_a_mistake(text: str) -> None:
    with pytest.raises(Mistake, match="not a prompt reference"):
        parse_ref(text)


def test_digits_are_a_version_anything_else_a_label() -> None:
    assert version_or_label("12") == (12, None)
    assert version_or_label("production") == (None, "production")
    assert version_or_label("v2") == (None, "v2")
    assert version_or_label(None) == (None, None)
