from __future__ import annotations

import pytest

from llmops.evals import suite as S
from llmops.evals.suite import SuiteError, load_suite

GOOD = """
name: support-answers
prompt: support@production
threshold: 0.75
min_pass_rate: 0.9
defaults:
  variables: {tone: friendly}
  assertions:
    - {type: signal, name: pii_output, op: "<=", value: 0}
cases:
  - id: refund
    variables: {question: "How do I get a refund?", tone: terse}
    context: "Refunds within 30 days."
    reference: "Within 30 days, from Orders."
    assertions:
      - {type: contains, value: "30 days", weight: 2}
      - {type: regex, pattern: "(?i)sorry", not: true}
  - id: hello
    variables: {question: "hi", n: 3}
"""


def test_a_good_suite_loads() -> None:
    suite = load_suite(GOOD)
    assert suite.name == "support-answers"
    assert (suite.prompt_name, suite.prompt_ref) == ("support", "production")
    assert suite.threshold == 0.75 and suite.min_pass_rate == 0.9
    refund, hello = suite.cases
    assert refund.context == "Refunds within 30 days."
    assert [a.type for a in suite.assertions_of(refund)] == ["signal", "contains", "regex"]
    assert suite.assertions_of(refund)[1].weight == 2.0
    assert suite.assertions_of(refund)[2].negate is True
    assert suite.assertions_of(refund)[1].params() == {"value": "30 days"}
    assert suite.variables_of(refund) == {"tone": "terse", "question": "How do I get a refund?"}
    assert suite.variables_of(hello) == {"tone": "friendly", "question": "hi", "n": 3}
    assert [a.type for a in suite.assertions_of(hello)] == ["signal"]


def test_defaults_apply_when_omitted() -> None:
    suite = load_suite(
        "name: s\nprompt: p@3\ncases:\n  - id: a\n    assertions: [{type: json_valid}]\n"
    )
    assert suite.threshold == 1.0 and suite.min_pass_rate == 1.0
    assert suite.prompt_ref == "3"


def _error(text: str) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(text)
    return str(info.value)


BASE = "name: s\nprompt: p@1\n"
CASE = "cases:\n  - id: a\n    assertions: [{type: json_valid}]\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected a mapping"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("name: [unclosed\n", "not YAML"),
        ("name: s\nprompt: p\n" + CASE, "give the prompt as NAME@VERSION or NAME@LABEL"),
        (BASE + "cases: []\n", "cases: List should have at least 1 item"),
        (BASE + "threshold: 1.5\n" + CASE, "threshold: Input should be less than or equal to 1"),
        (BASE + "threshold: '0.5'\n" + CASE, "threshold: Input should be a valid number"),
        (BASE + "colour: red\n" + CASE, "colour: Extra inputs are not permitted"),
        (BASE + "cases:\n  - id: a\n", "cases.0 (a): no assertions"),
        (BASE + CASE + "  - id: a\n    assertions: [{type: json_valid}]\n", "used twice"),
        (BASE + "cases:\n  - id: 'a b'\n    assertions: [{type: json_valid}]\n", "cases.0.id"),
        (
            BASE + "cases:\n  - id: a\n    assertions: [{type: rubrik}]\n",
            "cases.0.assertions.0: unknown assertion type 'rubrik'",
        ),
        (
            BASE + "cases:\n  - id: a\n    assertions: [{type: regex, pattern: '(a+)+'}]\n",
            "cases.0.assertions.0: assertion 'regex': pattern can backtrack for ever",
        ),
        (
            BASE + "cases:\n  - id: a\n    assertions: [{type: regex, pattern: '('}]\n",
            "does not compile",
        ),
        (
            BASE + "cases:\n  - id: a\n    assertions: [{type: json_valid, weight: 0}]\n",
            "cases.0.assertions.0.weight: Input should be greater than 0",
        ),
        (
            BASE + "cases:\n  - id: a\n    assertions: [{type: json_valid, not: 'yes'}]\n",
            "cases.0.assertions.0.not: Input should be a valid boolean",
        ),
        (
            BASE
            + "cases:\n  - id: a\n    variables: {x: [1]}\n    assertions: [{type: json_valid}]\n",
            "cases.0.variables.x",
        ),
        (
            BASE
            + "cases:\n  - id: a\n    variables: {x: .nan}\n    assertions: [{type: json_valid}]\n",
            "not a finite number",
        ),
        (BASE + "cases:\n  - id: a\n    assertions: [{type: length}]\n", "give min_chars"),
    ],
)
def test_each_mistake_is_named(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_every_mistake_is_listed_one_per_line() -> None:
    message = _error(
        "name: ''\nprompt: p@1\nthreshold: 2\ncases:\n  - {id: a, assertions: [{type: nope}]}\n"
    )
    lines = message.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("name:") and lines[1].startswith("threshold:")
    assert lines[2].startswith("cases.0.assertions.0:")


def test_yaml_that_builds_objects_is_refused() -> None:
    assert "not YAML" in _error("!!python/object/apply:os.system ['true']\n")


def test_sizes_are_bounded() -> None:
    big = "x" * (S.MAX_VALUE_CHARS + 1)
    assert "cases.0.context" in _error(
        BASE + f"cases:\n  - id: a\n    context: {big}\n    assertions: [{{type: json_valid}}]\n"
    )
    assert "longer than" in _error(
        BASE
        + f"cases:\n  - id: a\n    variables: {{q: {big}}}\n"
        + "    assertions: [{type: json_valid}]\n"
    )
    many = "".join("      - {type: json_valid}\n" for _ in range(S.MAX_ASSERTIONS + 1))
    assert "cases.0.assertions" in _error(BASE + "cases:\n  - id: a\n    assertions:\n" + many)
    assert "longer than" in _error("#" * (S.MAX_YAML_CHARS + 1))


def test_unicode_values_are_kept() -> None:
    suite = load_suite(
        BASE + "cases:\n  - id: jp\n    variables: {q: 日本語 🙂}\n"
        "    assertions: [{type: contains, value: 日本}]\n"
    )
    assert suite.cases[0].variables["q"] == "日本語 🙂"
