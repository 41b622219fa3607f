"""Label pointers over the seed's labels, typed variables, and a prompt's sampling defaults."""

from __future__ import annotations

from typing import Any

import pytest

from llmops.prompts.registry import (
    MissingVariable,
    PromptError,
    PromptSet,
    apply_prompt_defaults,
    prompt_set_from_data,
    render,
)
from schemas import LabelMove, PromptRef, PromptRequest, PromptVersion, SamplingParams


def version_of(**data: Any) -> PromptVersion:
    """A version from plain data, as a file or the topic gives it."""
    return PromptVersion.model_validate(data)


SEED: dict[str, Any] = {
    "prompts": [
        {
            "name": "p",
            "versions": [
                {
                    "version": 1,
                    "labels": ["production"],
                    "messages": [{"role": "user", "content": "one"}],
                },
                {
                    "version": 2,
                    "labels": ["staging"],
                    "messages": [{"role": "user", "content": "two"}],
                },
                {"version": 3, "messages": [{"role": "user", "content": "three"}]},
            ],
        }
    ]
}


def _move(label: str, version: int, **kw: Any) -> LabelMove:
    return LabelMove(name="p", label=label, version=version, **kw)


def test_a_move_overrides_the_seed_label_and_the_newest_move_wins() -> None:
    prompts = prompt_set_from_data(SEED)
    assert prompts.resolve(PromptRef(name="p")).version == 1
    prompts.move_label(_move("production", 3, previous=1))
    assert prompts.resolve(PromptRef(name="p")).version == 3
    prompts.move_label(_move("production", 2, previous=3))
    assert prompts.resolve(PromptRef(name="p", label="production")).version == 2
    # Other labels keep their seed pointer; a new label exists once moved.
    assert prompts.label_version("p", "staging") == 2
    prompts.move_label(_move("canary", 3))
    assert prompts.labels("p") == {"production": 2, "staging": 2, "canary": 3}
    assert prompts.labels_of("p", 2) == ["production", "staging"]
    assert [m.version for m in prompts.history["p"]["production"]] == [3, 2]


def test_a_label_pointing_at_an_unknown_version_is_a_clear_prompt_error() -> None:
    prompts = prompt_set_from_data(SEED)
    prompts.move_label(_move("production", 9))
    with pytest.raises(PromptError, match="points at version 9"):
        prompts.resolve(PromptRef(name="p"))


def _typed(**variables: Any) -> PromptVersion:
    return version_of(
        name="t",
        version=1,
        variables=variables,
        messages=[
            {
                "role": "user",
                "content": "{{ q }}|{{ n + 1 }}|{{ x * 2 }}|{{ 'y' if b else 'n' }}|{{ j.k }}",
            }
        ],
    )


TYPED = {
    "q": {"type": "string"},
    "n": {"type": "int"},
    "x": {"type": "float", "default": 0.5},
    "b": {"type": "bool", "default": False},
    "j": {"type": "json", "default": {"k": "dflt"}},
}


def test_declared_variables_are_converted_and_optional_ones_default() -> None:
    version = _typed(**TYPED)
    assert render(version, {"q": "hi", "n": "41"})[0].content == "hi|42|1.0|n|dflt"
    full = {"q": " s ", "n": "-2", "x": "1.5", "b": "yes", "j": '{"k": "v"}'}
    assert render(version, full)[0].content == " s |-1|3.0|y|v"


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"q": "hi"}, r"missing variable\(s\) n \(int\)"),
        ({}, r"q \(string\), n \(int\)"),
        ({"q": "hi", "n": "4.5"}, "'n' must be of type int, got '4.5'"),
        ({"q": "hi", "n": "9" * 30}, "'n' must be of type int"),
        ({"q": "hi", "n": "1", "x": "nan"}, "'x' must be of type float"),
        ({"q": "hi", "n": "1", "b": "maybe"}, "'b' must be of type bool"),
        ({"q": "hi", "n": "1", "j": "{not json"}, "'j' must be of type json"),
        ({"q": "hi", "n": "1", "j": "[" * 100_000}, "'j' must be of type json"),
    ],
)
def test_a_missing_or_mistyped_variable_is_a_missing_variable(
    given: dict[str, str], match: str
) -> None:
    with pytest.raises(MissingVariable, match=match):
        render(_typed(**TYPED), given)


def test_a_template_failing_on_a_value_is_a_prompt_error_not_a_crash() -> None:
    version = version_of(
        name="t",
        version=1,
        variables={"j": {"type": "json"}},
        messages=[{"role": "user", "content": "{{ j + 1 }}"}],
    )
    with pytest.raises(PromptError, match="'t' v1"):
        render(version, {"j": '"text"'})


def _request(**sampling: Any) -> PromptRequest:
    return PromptRequest(prompt=PromptRef(name="p"), sampling=SamplingParams(**sampling))


def test_the_prompt_params_fill_knobs_the_request_left_at_their_default() -> None:
    version = version_of(
        name="p",
        version=1,
        params={"temperature": 0.7, "max_tokens": 300, "stop": ["END"]},
        messages=[{"role": "user", "content": "x"}],
    )
    plain = apply_prompt_defaults(_request(), version)
    assert (plain.sampling.temperature, plain.sampling.max_tokens) == (0.7, 300)
    assert plain.sampling.stop == ["END"] and plain.sampling.top_p == 1.0
    own = apply_prompt_defaults(_request(temperature=0.1, max_tokens=20), version)
    assert (own.sampling.temperature, own.sampling.max_tokens) == (0.1, 20)
    assert own.sampling.stop == ["END"]
    assert plain.response_format == "text"


def test_a_response_schema_asks_for_a_json_answer() -> None:
    version = version_of(
        name="p",
        version=1,
        response_schema={"type": "object"},
        messages=[{"role": "user", "content": "x"}],
    )
    request = _request()
    assert apply_prompt_defaults(request, version).response_format == "json"
    bare = version_of(name="p", version=1, messages=[{"role": "user", "content": "x"}])
    assert apply_prompt_defaults(request, bare) is request


def test_with_hash_and_latest() -> None:
    prompts = prompt_set_from_data(SEED)
    three = prompts.versions["p"][3]
    assert prompts.with_hash("p", three.content_hash) == three
    assert prompts.with_hash("p", "0" * 64) is None
    latest = prompts.latest("p")
    assert latest is not None and latest.version == 3
    assert PromptSet().latest("p") is None
