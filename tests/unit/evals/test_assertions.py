from __future__ import annotations

from typing import Any

import pytest

from llmops.evals import assertions as A
from llmops.evals.assertions import ASSERTIONS, Assertion, Result, Subject, UnknownAssertionError


def run(
    name: str,
    params: dict[str, Any],
    output: str = "",
    reference: str | None = None,
    **measured: Any,
) -> bool | None:
    return (
        ASSERTIONS.build(name, params).judge(Subject(Result(output, **measured), reference)).passed
    )


def test_equals_value_and_reference() -> None:
    assert run("equals", {"value": "Paris"}, " Paris\n")
    assert not run("equals", {"value": "Paris", "strip": False}, " Paris\n")
    assert not run("equals", {"value": "Paris"}, "paris")
    assert run("equals", {"value": "Paris", "case_sensitive": False}, "PARİS".replace("İ", "I"))
    assert run("equals", {}, "42", reference="42")
    assert run("equals", {}, "42") is None  # no value, no reference: cannot judge


def test_contains_and_not_contains() -> None:
    assert run("contains", {"value": "30 days"}, "within 30 days")
    assert not run("contains", {"value": "30 Days"}, "within 30 days")
    assert run("contains", {"value": "30 Days", "case_sensitive": False}, "within 30 days")
    assert run("not_contains", {"value": "sorry"}, "Sure!")
    assert not run("not_contains", {"value": "sorry"}, "I'm sorry")
    assert run("contains", {"value": "日本"}, "日本語")
    with pytest.raises(ValueError, match="value"):
        ASSERTIONS.build("contains", {"value": ""})


def test_regex() -> None:
    assert run("regex", {"pattern": r"\d{3}-\d{4}"}, "call 555-1234")
    assert not run("regex", {"pattern": r"\d{3}-\d{4}", "full_match": True}, "call 555-1234")
    assert run("regex", {"pattern": "HELLO", "ignore_case": True}, "hello")


def test_regex_reads_a_bounded_prefix() -> None:
    text = "a" * A.MAX_MATCH_TEXT + "needle"
    assert not run("regex", {"pattern": "needle"}, text)
    assert run("contains", {"value": "needle"}, text)  # substring search reads it all


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+$",
        "(a*)*b",
        "(?:x\\w*)+y",
        "((ab)*c)*",
        "(a{1,1000})+",
        "(?=(a+)+)",
        "(a?){30}a{30}",
        "(\\s*\\w+)*$",
        "(a|aa)*b",
        "(?:ab|Ac)+x",  # branches compared case-folded
        "(?:\\w\\w|\\d)+x",
        "(?:a|)+b",
        "(x|(a+)+)",
    ],
)
def test_catastrophic_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="can backtrack for ever"):
        ASSERTIONS.build("regex", {"pattern": pattern})


@pytest.mark.parametrize(
    "pattern",
    [
        "(ab)+",
        "a+b+",
        "(a{2})+",
        "(?:foo|bar)*",
        "(a++)+",
        "(?>a+)+",
        "(\\d{1,3}\\.){3}\\d{1,3}",
        "^\\s*\\{.*\\}\\s*$",
        "(?i)(?:yes|no)",
        "(\\w|\\d)+x",  # one character per branch: re makes it a class, no backtracking
    ],
)
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    ASSERTIONS.build("regex", {"pattern": pattern})


@pytest.mark.parametrize("pattern", ["(", "[a-", "a{2,1}", "(?P<x>a)(?P<x>b)"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="does not compile"):
        ASSERTIONS.build("regex", {"pattern": pattern})


def test_long_patterns_are_refused() -> None:
    with pytest.raises(ValueError, match="pattern"):
        ASSERTIONS.build("regex", {"pattern": "a" * (A.MAX_PATTERN + 1)})


def test_json_valid() -> None:
    assert run("json_valid", {}, ' {"a": [1, 2]} ')
    assert not run("json_valid", {}, "{'a': 1}")
    assert not run("json_valid", {}, "")
    assert not run("json_valid", {}, "[" * 200_000)  # too deep: judged, never raised


def test_length() -> None:
    assert run("length", {"min_chars": 2, "max_chars": 3}, "abc")
    assert not run("length", {"min_chars": 2, "max_chars": 3}, "abcd")
    assert not run("length", {"min_chars": 2}, "a")
    assert run("length", {"max_chars": 1}, "🙂")  # characters, not bytes
    with pytest.raises(ValueError, match="min_chars is above max_chars"):
        ASSERTIONS.build("length", {"min_chars": 3, "max_chars": 2})
    with pytest.raises(ValueError, match="give min_chars"):
        ASSERTIONS.build("length", {})


def test_signal_bounds() -> None:
    spec = {"name": "pii_output", "op": "<=", "value": 0}
    assert run("signal", spec, signals={"pii_output": 0.0})
    assert not run("signal", spec, signals={"pii_output": 1.0})
    assert run("signal", spec, signals={}) is None
    assert run("signal", {"name": "refusal", "op": "==", "value": 0}, signals={"refusal": 0.0})
    assert run("signal", {"name": "tox", "op": ">", "value": 0.5}, signals={"tox": 0.7})
    with pytest.raises(ValueError, match="op"):
        ASSERTIONS.build("signal", {"name": "x", "op": "=~", "value": 0})
    with pytest.raises(ValueError, match="value"):
        ASSERTIONS.build("signal", {"name": "x", "op": "<", "value": float("nan")})


def test_number_bounds() -> None:
    assert run("latency", {"max": 100}, latency_ms=100.0)
    assert not run("latency", {"max": 100}, latency_ms=100.5)
    assert run("latency", {"max": 100}) is None
    assert run("output_tokens", {"max": 5}, output_tokens=5)
    assert not run("total_tokens", {"max": 5}, input_tokens=3, output_tokens=3)
    assert run("total_tokens", {"max": 5}, output_tokens=3) is None
    assert not run("cost", {"max": 0.001}, cost_usd=0.002)
    assert run("similarity", {"min": 0.8}, similarity=0.8)
    assert not run("similarity", {"min": 0.8}, similarity=0.79)
    with pytest.raises(ValueError, match="max"):
        ASSERTIONS.build("latency", {"max": -1})
    with pytest.raises(ValueError, match="max"):
        ASSERTIONS.build("latency", {"max": "100"})  # strict: no strings for numbers


def test_unknown_type_names_the_known() -> None:
    with pytest.raises(UnknownAssertionError, match="known: contains"):
        ASSERTIONS.build("rubrik", {})


def test_registering_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered already"):
        ASSERTIONS.register(A.Equals)


def test_a_raising_driver_fails_its_check_instead_of_the_suite() -> None:
    class Broken(Assertion):
        type = "broken"
        Params = A.NoParams

        def judge(self, subject: Subject) -> A.Verdict:
            raise RuntimeError("bug")

    check = A.judge(Broken(A.NoParams()), True, 1.0, Subject(Result("x")))
    assert not check.passed and "RuntimeError" in check.message


# --- json_schema, no_pii, not_refusal, rubric -----------------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name"],
    "additionalProperties": False,
}


def schema_verdict(output: str, params: dict[str, Any], registry: Any = None) -> A.Verdict:
    return ASSERTIONS.build("json_schema", params).judge(Subject(Result(output), None, registry))


def test_json_schema_inline() -> None:
    assert schema_verdict('{"name": "Ada", "age": 36}', {"schema": PERSON}).passed
    bad = schema_verdict('{"name": "Ada", "age": -1}', {"schema": PERSON})
    assert bad.passed is False and "age" in bad.message
    assert schema_verdict('{"age": 3}', {"schema": PERSON}).passed is False
    assert schema_verdict("Ada, 36", {"schema": PERSON}).passed is False  # not JSON


def test_json_schema_from_the_prompt_version_and_inline_wins() -> None:
    assert schema_verdict('{"name": "Ada"}', {}, PERSON).passed
    assert schema_verdict('{"name": 1}', {}, PERSON).passed is False
    assert schema_verdict("[]", {"schema": {"type": "array"}}, PERSON).passed
    no_schema = schema_verdict('{"name": "Ada"}', {})
    assert no_schema.passed is None and "no schema" in no_schema.message


def test_json_schema_refuses_bad_schemas_and_never_fetches() -> None:
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        ASSERTIONS.build("json_schema", {"schema": {"type": "banana"}})
    with pytest.raises(ValueError, match="longer than"):
        ASSERTIONS.build("json_schema", {"schema": {"enum": ["x" * A.MAX_SCHEMA_CHARS]}})
    unusable = schema_verdict("{}", {}, {"type": 7})
    assert unusable.passed is None and "unusable" in unusable.message
    remote = {"$ref": "http://127.0.0.1:1/schema.json"}
    fetched = schema_verdict("{}", {"schema": remote})
    assert fetched.passed is None and "cannot be applied" in fetched.message


def test_no_pii_and_not_refusal_read_the_detector_signals() -> None:
    clean = {"pii_output": 0.0, "refusal": 0.0}
    leaky = {"pii_output": 2.0, "pii_output.EMAIL": 2.0, "refusal": 1.0}
    assert run("no_pii", {}, signals=clean) and run("not_refusal", {}, signals=clean)
    assert run("no_pii", {}, signals=leaky) is False
    assert run("not_refusal", {}, signals=leaky) is False
    verdict = ASSERTIONS.build("no_pii", {}).judge(Subject(Result("x", signals=leaky)))
    assert "EMAIL" in verdict.message
    assert run("no_pii", {}, signals={}) is None and run("not_refusal", {}) is None


def test_rubric_reads_its_grade_by_key() -> None:
    by_verdict = ASSERTIONS.build("rubric", {"criteria": "polite"})
    by_score = ASSERTIONS.build("rubric", {"check": "rubric", "min_score": 4, "model": "judge"})
    assert isinstance(by_verdict.params, A.RubricParams)
    assert isinstance(by_score.params, A.RubricParams)
    grades = {
        by_verdict.params.key: A.Grade(True, 3, "fine"),
        by_score.params.key: A.Grade(True, 3, "fine"),
    }
    subject = Subject(Result("x", grades=grades))
    assert by_verdict.judge(subject).passed is True
    assert by_score.judge(subject).passed is False  # PASS, but the score is below 4
    assert by_verdict.judge(Subject(Result("x"))).passed is None  # not graded
    unparsed = Subject(Result("x", grades={by_verdict.params.key: A.Grade(None, None, "?")}))
    assert by_verdict.judge(unparsed).passed is None
    with pytest.raises(ValueError, match="exactly one"):
        ASSERTIONS.build("rubric", {"criteria": "x", "check": "harm"})
    with pytest.raises(ValueError, match="check"):
        ASSERTIONS.build("rubric", {"check": "vibes"})
