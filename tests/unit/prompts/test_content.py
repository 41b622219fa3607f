"""Prompt files: both shapes parse, what cannot be pushed is refused with the file named, and
the content hash is the content's alone (not its labels, not its key order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmops.prompts.content import PromptFileError, drafts_from_text, read_prompt_files
from llmops.prompts.files import demo_prompts_file
from schemas import PromptVersion


def version_of(**data: Any) -> PromptVersion:
    """A version from plain data, as a file or the topic gives it."""
    return PromptVersion.model_validate(data)


SINGLE = """
name: support
description: one sentence answers
model: gemma-3-270m
params: {temperature: 0.2, max_tokens: 64}
variables:
  product: string
  question: {type: string, description: what the user asked}
  n: {type: int, default: 3}
messages:
  - {role: system, content: "You support {{ product }}; give {{ n }} tips."}
  - {role: user, content: "{{ question }}"}
response_schema: {type: object, properties: {answer: {type: string}}, required: [answer]}
metadata: {owner: support-team, tags: [support]}
labels: [staging]
"""


def test_a_single_prompt_file_gives_one_draft_with_typed_variables() -> None:
    [draft] = drafts_from_text(SINGLE, "support.yaml")
    version = draft.version
    assert draft.name == "support" and draft.labels == ("staging",)
    assert version.variables["product"].type == "string" and version.variables["product"].required
    assert version.variables["n"].type == "int" and not version.variables["n"].required
    assert version.variables["n"].default == 3
    assert version.params.temperature == 0.2 and version.params.top_p is None
    assert version.response_schema is not None and version.metadata["owner"] == "support-team"
    assert len(draft.content_hash) == 64


def test_the_hash_ignores_labels_and_key_order_and_follows_the_content() -> None:
    [a] = drafts_from_text(SINGLE, "a.yaml")
    [b] = drafts_from_text(SINGLE.replace("labels: [staging]", "labels: [production, x]"), "b")
    reordered = SINGLE.replace(
        "params: {temperature: 0.2, max_tokens: 64}", "params: {max_tokens: 64, temperature: 0.2}"
    )
    [c] = drafts_from_text(reordered, "c.yaml")
    [d] = drafts_from_text(SINGLE.replace("give {{ n }} tips", "give {{ n }} hints"), "d.yaml")
    assert a.content_hash == b.content_hash == c.content_hash
    assert d.content_hash != a.content_hash


def test_the_seed_file_gives_each_listed_version_in_order() -> None:
    drafts = read_prompt_files([demo_prompts_file()]).drafts
    assert [(d.name, d.file_version, d.labels) for d in drafts] == [
        ("support-answer", 1, ("production",)),
        ("support-answer", 2, ("candidate",)),
        ("summarize", 1, ("production",)),
    ]


def test_a_directory_is_read_recursively_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.yml").write_text(SINGLE.replace("name: support", "name: two"))
    (tmp_path / "one.yaml").write_text(SINGLE.replace("name: support", "name: one"))
    (tmp_path / "notes.txt").write_text("not a prompt")
    (tmp_path / "empty.yaml").write_text("")
    found = read_prompt_files([tmp_path])
    assert sorted(d.name for d in found.drafts) == ["one", "two"]
    assert len(found.files) == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nmessages: [{role: user, content: '{{ oops'}]", "not a valid template"),
        (
            "name: x\nvariables: {a: string}\nmessages: [{role: user, content: '{{ a }}{{ b }}'}]",
            "undeclared variable",
        ),
        (
            "name: x\nmessages: [{role: user, content: hi}]\nresponse_schema: {type: 12}",
            "not a valid JSON Schema",
        ),
        ("name: x\nmessages: [{role: user, content: hi}]\nmesages: []", "unknown key"),
        ("name: x\nmessages: []", "messages"),
        ("name: 'a b'\nmessages: [{role: user, content: hi}]", "name"),
        (
            "name: x\nvariables: {n: {type: int, default: 'three'}}\n"
            "messages: [{role: user, content: hi}]",
            "not of type int",
        ),
        ("name: x\nvariables: {n: complex}\nmessages: [{role: user, content: hi}]", "variables"),
        ("name: x\nparams: {temperature: 9}\nmessages: [{role: user, content: hi}]", "temperature"),
        ("- just\n- a list", "expected a prompt"),
        ("name: [unclosed", "not YAML"),
        ("prompts: {a: 1}", "must be a list"),
        ("prompts: [{name: x, versions: []}]", "non-empty list"),
    ],
)
def test_what_cannot_be_pushed_is_refused_naming_the_file(text: str, match: str) -> None:
    with pytest.raises(PromptFileError, match=match) as caught:
        drafts_from_text(text, "bad.yaml")
    assert "bad.yaml" in str(caught.value)


def test_a_missing_path_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="no such file"):
        read_prompt_files([tmp_path / "nope"])


def test_a_version_whose_hash_does_not_match_its_content_is_refused() -> None:
    good = version_of(name="p", version=1, messages=[{"role": "user", "content": "hi"}])
    data = good.model_dump(mode="json")
    data["messages"][0]["content"] = "tampered"
    with pytest.raises(ValueError, match="does not match"):
        PromptVersion.model_validate(data)
    assert PromptVersion.model_validate(good.model_dump(mode="json")) == good
