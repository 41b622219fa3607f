"""The contract every assertion driver passes: built from its minimal parameters, it judges any
text (empty, huge, unicode, control characters) and any measured numbers without raising,
returns a bounded message, and negation flips a judged verdict but never an unjudged one."""

from __future__ import annotations

from typing import Any

import pytest

from llmops.evals import assertions as A
from llmops.evals.assertions import ASSERTIONS, Result, Subject, judge

MINIMAL: dict[str, dict[str, Any]] = {
    "equals": {"value": "x"},
    "contains": {"value": "x"},
    "not_contains": {"value": "x"},
    "regex": {"pattern": "a.c"},
    "json_valid": {},
    "length": {"max_chars": 10},
    "signal": {"name": "pii_output", "op": "<=", "value": 0},
    "latency": {"max": 100},
    "output_tokens": {"max": 10},
    "total_tokens": {"max": 10},
    "cost": {"max": 0.01},
    "similarity": {"min": 0.8},
    "json_schema": {"schema": {"type": "object", "required": ["a"]}},
    "no_pii": {},
    "not_refusal": {},
    "rubric": {"criteria": "The answer is polite."},
}

TEXTS = [
    "",
    "x",
    "a" * 2_000_000,
    '{"a": 1}',
    "[" * 100_000,
    "Zoë 日本語 🙂 \u202e\x00\x1b[31m\ud800",
    "\n\t\r" * 1000,
]

MEASURED = [
    Result("", signals={}),
    Result(
        "",
        latency_ms=5.0,
        input_tokens=3,
        output_tokens=4,
        cost_usd=0.001,
        similarity=0.9,
        signals={"pii_output": 0.0, "refusal": 1.0},
        grades={
            "|rubric|": A.Grade(True, 5, "ok"),
            "||The answer is polite.": A.Grade(None, 2, ""),
        },
    ),
    Result(
        "", latency_ms=float("nan"), similarity=float("inf"), signals={"pii_output": float("nan")}
    ),
]


def test_every_registered_driver_is_covered() -> None:
    assert sorted(MINIMAL) == ASSERTIONS.names()


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_driver_contract(name: str) -> None:
    driver = ASSERTIONS.build(name, MINIMAL[name])
    assert driver.type == name
    subjects = [Subject(Result(text), reference="x") for text in TEXTS]
    subjects += [Subject(r, reference=None) for r in MEASURED]
    subjects += [Subject(Result(t), None, {"type": "array"}) for t in ("[1]", "{}", "[" * 5000)]
    for subject in subjects:
        verdict = driver.judge(subject)
        assert verdict.passed in (True, False, None)
        assert 0 < len(verdict.message) <= 200
        plain = judge(driver, False, 1.0, subject)
        negated = judge(driver, True, 2.0, subject)
        assert negated.weight == 2.0 and negated.type == f"not {name}"
        if verdict.passed is None:
            assert not plain.passed and not negated.passed
        else:
            assert plain.passed == verdict.passed
            assert negated.passed == (not verdict.passed)


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_driver_rejects_unknown_parameters(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ASSERTIONS.build(name, {**MINIMAL[name], "bogus": 1})
