"""The prompt set: resolving versions and labels, rendering, and what a set refuses at load."""

from typing import Any

import pytest

from llmops.prompts.registry import (
    MissingVariable,
    PromptError,
    PromptSet,
    prompt_set_from_data,
    render,
)
from schemas import PromptRef, PromptVersion

PROMPTS: dict[str, Any] = {
    "prompts": [
        {
            "name": "greet",
            "versions": [
                {
                    "version": 1,
                    "labels": ["production"],
                    "messages": [{"role": "user", "content": "Hello {{ name }}"}],
                },
                {
                    "version": 2,
                    "labels": ["candidate"],
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hi {{ name }}!"},
                    ],
                },
                {
                    "version": 3,
                    "labels": ["production"],
                    "model": "big",
                    "messages": [{"role": "user", "content": "Hey {{ name }}"}],
                },
            ],
        },
    ],
    "experiments": [
        {
            "name": "greet-ab",
            "prompt_name": "greet",
            "variants": [
                {"name": "control", "prompt_version": 1, "weight": 1},
                {"name": "treatment", "prompt_version": 2, "weight": 1},
            ],
        },
    ],
}


@pytest.fixture
def prompts() -> PromptSet:
    return prompt_set_from_data(PROMPTS)


def _experiment(name: str, status: str, prompt_version: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "prompt_name": "greet",
        "status": status,
        "variants": [{"name": "a", "prompt_version": prompt_version, "weight": 1}],
    }


def test_resolution_by_pin_by_given_version_and_by_label(prompts: PromptSet) -> None:
    assert prompts.resolve(PromptRef(name="greet", version=2)).version == 2
    # An experiment's version overrides the reference's label.
    assert prompts.resolve(PromptRef(name="greet", label="candidate"), 1).version == 1
    assert prompts.resolve(PromptRef(name="greet", label="candidate")).version == 2
    # No label: the production label, and its highest version.
    assert prompts.resolve(PromptRef(name="greet")).version == 3


def test_rendering_substitutes_and_rejects_missing_variables(prompts: PromptSet) -> None:
    v2 = prompts.resolve(PromptRef(name="greet"), 2)
    assert [m.content for m in render(v2, {"name": "Ada"})] == ["Be brief.", "Hi Ada!"]
    assert [m.role for m in render(v2, {"name": "Ada"})] == ["system", "user"]
    with pytest.raises(PromptError, match="undefined"):
        render(v2, {})
    with pytest.raises(MissingVariable, match=r"'greet' v2"):
        render(v2, {})


def test_a_broken_template_is_a_prompt_error_not_a_missing_variable() -> None:
    broken = PromptVersion.model_validate(
        {"name": "bad", "version": 1, "messages": [{"role": "user", "content": "{{ oops"}]}
    )
    with pytest.raises(PromptError, match=r"'bad' v1") as caught:
        render(broken, {})
    assert not isinstance(caught.value, MissingVariable)


def test_template_variables_cannot_execute_code(prompts: PromptSet) -> None:
    v1 = prompts.resolve(PromptRef(name="greet"), 1)
    evil = "{{ ''.__class__.__mro__ }}"
    assert render(v1, {"name": evil})[0].content == f"Hello {evil}"


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        (PromptRef(name="nope"), "unknown prompt"),
        (PromptRef(name="greet", version=9), "no version 9"),
        (PromptRef(name="greet", label="beta"), "no version labelled 'beta'"),
    ],
)
def test_unresolvable_references(prompts: PromptSet, ref: PromptRef, match: str) -> None:
    with pytest.raises(PromptError, match=match):
        prompts.resolve(ref)


def test_only_a_running_experiment_applies() -> None:
    data = {**PROMPTS, "experiments": [_experiment("drafted", "draft")]}
    assert prompt_set_from_data(data).running_experiment("greet") is None
    data["experiments"] = [_experiment("done", "stopped"), _experiment("live", "running")]
    running = prompt_set_from_data(data).running_experiment("greet")
    assert running is not None and running.name == "live"
    assert prompt_set_from_data(data).running_experiment("other") is None


def test_experiment_pointing_at_a_missing_version_is_refused_at_load() -> None:
    bad = {
        **PROMPTS,
        "experiments": [
            {
                "name": "x",
                "prompt_name": "greet",
                "variants": [{"name": "a", "prompt_version": 7, "weight": 1}],
            }
        ],
    }
    with pytest.raises(PromptError):
        prompt_set_from_data(bad)


def test_empty_data_is_an_empty_set() -> None:
    empty = prompt_set_from_data({})
    assert empty.versions == {} and empty.experiments == {}
    assert prompt_set_from_data({"prompts": None, "experiments": None}).versions == {}
