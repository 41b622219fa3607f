"""JSON validity: strict, one fenced document allowed, no signal when JSON was not asked."""

from __future__ import annotations

import pytest

from streams.detectors.base import Exchange
from streams.detectors.json_format import JsonFormatDetector, check_json


@pytest.mark.parametrize(
    "text",
    ['{"a": 1}', "[1, 2.5, null, true]", '  "just a string"\n', "0", '{"é": "你好 🙂"}'],
)
def test_strict_json_is_valid_without_findings(text: str) -> None:
    assert check_json(text) == (True, [])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "{'a': 1}",  # Python, not JSON
        '{"a": 1,}',
        '{"a": NaN}',
        "// comment\n{}",
        '{"a": 1} trailing',
        '"\ud800"',  # a lone surrogate is not UTF-8
        "\x00",
        "[" * 5000 + "]" * 5000,  # nested past the parser's limit
        'Here you go: ```json\n{"a": 1}\n```',  # prose around the fence
        '```json\n{"a": 1}\n``` and more',
        '```json\n{"a": }\n```',  # a fence around invalid JSON
        '```json {"a": 1}```',  # no line break after the opening fence
    ],
)
def test_invalid_outputs(text: str) -> None:
    assert check_json(text) == (False, [])


@pytest.mark.parametrize("tag", ["json", "JSON", ""])
def test_one_fence_around_a_document_is_valid_and_noted(tag: str) -> None:
    body = '{"a": [1, 2]}\n'
    text = f"\n```{tag}\n{body}```\n"
    valid, findings = check_json(text)
    assert valid
    (finding,) = findings
    assert finding.kind == "json_fenced"
    assert text[finding.start : finding.end] == body


def test_signal_only_when_json_was_asked() -> None:
    out = JsonFormatDetector().detect(
        [
            Exchange("a", "", "not json", wants_json=False),
            Exchange("b", "", "not json", wants_json=True),
            Exchange("c", "", '{"ok": true}', wants_json=True),
        ]
    )
    assert out[0] == []
    assert [(s.name, s.value, s.detector) for s in out[1]] == [("json_valid", 0.0, "json_validity")]
    assert [(s.name, s.value) for s in out[2]] == [("json_valid", 1.0)]
