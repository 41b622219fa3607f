"""What a suite asserts about one result: an extension point in the shape of streams/detectors.

An assertion type is a driver: a subclass of `Assertion` with a `type` name and a strict pydantic
`Params` model, registered in `ASSERTIONS`. A suite names the type and its parameters; `build`
checks them when the suite is loaded, so a mistake is reported before anything is sent.

Drivers judge only what the runner measured: the output text, its numbers (latency, tokens,
cost), the similarity to the reference and the detector signals (llmops never imports streams:
the runner passes e.g. `{"pii_output": 0.0, "refusal": 1.0}`). A driver returns None when what it
needs was not measured; that fails the assertion whatever its negation, and says why.

Drivers that need more than the text read what the runner put in the subject: `json_schema`
the prompt version's response schema (or one written inline), `no_pii` and `not_refusal` the
cheap detectors' signals (`pii_output`, `refusal`), `rubric` the grade a judge model gave through
a pool (`Result.grades`, keyed by `RubricParams.key`).

Every driver passes tests/unit/evals/test_assertions_contract.py.
"""

from __future__ import annotations

import abc
import builtins
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import jsonschema
import referencing
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MAX_TEXT = 1_000  # chars of an expected value, substring or message
MAX_PATTERN = 512  # chars of a regex pattern
MAX_MATCH_TEXT = 20_000  # a regex reads at most this many chars of the output
MAX_MESSAGE = 500  # chars of a judged assertion's message
MAX_SCHEMA_CHARS = 100_000  # a JSON schema, as JSON
MAX_CRITERIA = 4_000  # chars of a rubric's grading criteria


@dataclass(frozen=True, slots=True)
class Grade:
    """What a judge model said of one answer: its verdict (None: it wrote none that could be
    read, or the judge request failed) and its score 1..5 (None: none given)."""

    passed: bool | None
    score: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Result:
    """One answer to one case, with what the runner measured about it."""

    output: str
    error: str | None = None  # the platform's error reply; the case then fails
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    similarity: float | None = None  # to the case's reference answer (embeddings)
    signals: Mapping[str, float] = field(default_factory=dict)  # detector signals by name
    grades: Mapping[str, Grade] = field(default_factory=dict)  # rubric grades by RubricParams.key


@dataclass(frozen=True, slots=True)
class Subject:
    """What an assertion reads: the result, its case's reference answer and the response
    JSON schema of the prompt version that answered (None: it declares none)."""

    result: Result
    reference: str | None = None
    response_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A driver's judgement before negation: None when it could not judge."""

    passed: bool | None
    message: str


class AssertionParams(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Assertion(abc.ABC):
    """A kind of assertion; `type` is what a suite calls it."""

    type: ClassVar[str]
    Params: ClassVar[builtins.type[AssertionParams]]

    def __init__(self, params: AssertionParams) -> None:
        self.params = params

    @abc.abstractmethod
    def judge(self, subject: Subject) -> Verdict:
        """Whether the subject satisfies the assertion, and why in a few words.

        Must not raise on any text (empty, huge, any unicode, control characters)."""


class UnknownAssertionError(ValueError):
    """A suite names an assertion type no driver provides."""


class AssertionRegistry:
    """Assertion type names to their drivers."""

    def __init__(self) -> None:
        self._drivers: dict[str, type[Assertion]] = {}

    def register(self, driver: type[Assertion]) -> type[Assertion]:
        if driver.type in self._drivers:
            raise ValueError(f"assertion type {driver.type!r} is registered already")
        self._drivers[driver.type] = driver
        return driver

    def names(self) -> list[str]:
        return sorted(self._drivers)

    def build(self, type_name: str, params: Mapping[str, Any]) -> Assertion:
        """The driver for `type_name` with its parameters checked; ValueError names the mistake."""
        driver = self._drivers.get(type_name)
        if driver is None:
            known = ", ".join(self.names())
            raise UnknownAssertionError(f"unknown assertion type {type_name!r} (known: {known})")
        try:
            checked = driver.Params.model_validate(dict(params))
        except ValidationError as exc:
            problems = "; ".join(
                ".".join(str(p) for p in err["loc"]) + ": " + _plain(err["msg"])
                if err["loc"]
                else _plain(err["msg"])
                for err in exc.errors()
            )
            raise ValueError(f"assertion {type_name!r}: {problems}") from None
        return driver(checked)


ASSERTIONS = AssertionRegistry()


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _fold(text: str, case_sensitive: bool) -> str:
    return text if case_sensitive else text.casefold()


# --- text ----------------------------------------------------------------------------------


class EqualsParams(AssertionParams):
    value: str | None = Field(default=None, max_length=MAX_TEXT)  # None: the reference answer
    case_sensitive: bool = True
    strip: bool = True


@ASSERTIONS.register
class Equals(Assertion):
    """The output equals a value (or the case's reference answer)."""

    type = "equals"
    Params = EqualsParams

    def judge(self, subject: Subject) -> Verdict:
        p = self.params
        assert isinstance(p, EqualsParams)
        expected = p.value if p.value is not None else subject.reference
        if expected is None:
            return Verdict(None, "no value and no reference answer to compare with")
        got = subject.result.output
        if p.strip:
            got, expected = got.strip(), expected.strip()
        same = _fold(got, p.case_sensitive) == _fold(expected, p.case_sensitive)
        return Verdict(same, f"output {'equals' if same else 'differs from'} {_short(expected)}")


class ContainsParams(AssertionParams):
    value: str = Field(min_length=1, max_length=MAX_TEXT)
    case_sensitive: bool = True


@ASSERTIONS.register
class Contains(Assertion):
    """The output contains a substring."""

    type = "contains"
    Params = ContainsParams

    def judge(self, subject: Subject) -> Verdict:
        p = self.params
        assert isinstance(p, ContainsParams)
        found = _fold(p.value, p.case_sensitive) in _fold(subject.result.output, p.case_sensitive)
        return Verdict(found, f"output {'contains' if found else 'lacks'} {_short(p.value)}")


@ASSERTIONS.register
class NotContains(Contains):
    """The output does not contain a substring (the same as contains with `not: true`)."""

    type = "not_contains"

    def judge(self, subject: Subject) -> Verdict:
        found = super().judge(subject)
        return Verdict(not found.passed, found.message)


MANY = 10  # a repeat of at least this many times is "many" for the backtracking check


def _backtracking_risk(pattern: str) -> str | None:
    """Why the pattern can backtrack exponentially, or None. Conservative and syntactic: inside
    a repeat of many (at least MANY, or unbounded), it refuses a repeat of variable count, as in
    (a+)+, (a?){30} or (\\s*\\w+)*, and an alternation whose branches do not start with distinct
    literal characters, as in (a|aa)* or (\\w|\\d)+. Possessive repeats and atomic groups, which
    never backtrack into what they matched, are the way to write such patterns safely.
    Polynomial blow-ups (\\w*\\w*\\w*x) are not refused: the bound on the text read caps them."""
    from re import _parser  # type: ignore[attr-defined]

    def first_literal(branch: Any) -> str | None:
        items = list(branch)
        if not items or str(items[0][0]) != "LITERAL":
            return None
        return chr(items[0][1]).casefold()

    def walk(items: Any, many: bool) -> str | None:
        for op, arg in items:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT"):
                low, high, sub = arg
                if many and low != high:
                    return "it nests a repeat of variable count inside a repeat, like (a+)+"
                found = walk(sub, many or high >= MANY)
            elif name == "POSSESSIVE_REPEAT":
                found = walk(arg[2], False)
            elif name == "ATOMIC_GROUP":
                found = walk(arg, False)
            elif name == "SUBPATTERN":
                found = walk(arg[-1], many)
            elif name == "BRANCH":
                if many:
                    firsts = [first_literal(branch) for branch in arg[1]]
                    if None in firsts or len(set(firsts)) != len(firsts):
                        return (
                            "it repeats an alternation whose branches can start alike, like (a|aa)*"
                        )
                found = next((r for r in (walk(b, many) for b in arg[1]) if r), None)
            elif name in ("ASSERT", "ASSERT_NOT"):
                found = walk(arg[1], many)
            elif name == "GROUPREF_EXISTS":
                found = walk(arg[1], many) or (walk(arg[2], many) if arg[2] else None)
            else:
                found = None
            if found:
                return found
        return None

    return walk(_parser.parse(pattern), False)


class RegexParams(AssertionParams):
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN)
    ignore_case: bool = False
    full_match: bool = False  # else: found anywhere in the output

    @model_validator(mode="after")
    def _compiles(self) -> RegexParams:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        except RecursionError:
            raise ValueError("pattern is nested too deeply") from None
        risk = _backtracking_risk(self.pattern)
        if risk is not None:
            raise ValueError(
                f"pattern can backtrack for ever: {risk}; use a possessive repeat (a++) "
                "or an atomic group (?>...)"
            )
        return self


@ASSERTIONS.register
class Regex(Assertion):
    """The output matches a pattern; only its first MAX_MATCH_TEXT chars are read."""

    type = "regex"
    Params = RegexParams

    def __init__(self, params: AssertionParams) -> None:
        super().__init__(params)
        assert isinstance(params, RegexParams)
        self._compiled = re.compile(params.pattern, re.IGNORECASE if params.ignore_case else 0)
        self._full = params.full_match

    def judge(self, subject: Subject) -> Verdict:
        text = subject.result.output[:MAX_MATCH_TEXT]
        match = self._compiled.fullmatch(text) if self._full else self._compiled.search(text)
        how = "matches" if match else "does not match"
        return Verdict(match is not None, f"output {how} /{_short(self._compiled.pattern)}/")


class NoParams(AssertionParams):
    pass


@ASSERTIONS.register
class JsonValid(Assertion):
    """The output is one JSON document (surrounding whitespace allowed)."""

    type = "json_valid"
    Params = NoParams

    def judge(self, subject: Subject) -> Verdict:
        try:
            json.loads(subject.result.output)
        except (ValueError, RecursionError) as exc:
            return Verdict(False, f"output is not JSON: {str(exc)[:100]}")
        return Verdict(True, "output is JSON")


class LengthParams(AssertionParams):
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> LengthParams:
        if self.min_chars is None and self.max_chars is None:
            raise ValueError("give min_chars, max_chars or both")
        if (
            self.min_chars is not None
            and self.max_chars is not None
            and self.min_chars > self.max_chars
        ):
            raise ValueError("min_chars is above max_chars")
        return self


@ASSERTIONS.register
class Length(Assertion):
    """The output's length in characters is within bounds."""

    type = "length"
    Params = LengthParams

    def judge(self, subject: Subject) -> Verdict:
        p = self.params
        assert isinstance(p, LengthParams)
        n = len(subject.result.output)
        low = p.min_chars if p.min_chars is not None else 0
        high = p.max_chars if p.max_chars is not None else math.inf
        return Verdict(low <= n <= high, f"output has {n} chars (bounds {low}..{high})")


def _schema_problem(schema: Any) -> str | None:
    """Why `schema` is no usable JSON schema, or None."""
    if not isinstance(schema, Mapping | bool):
        return "a JSON schema is an object (or true/false)"
    try:
        if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
            return f"the schema is longer than {MAX_SCHEMA_CHARS} chars as JSON"
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"not a valid JSON schema: {exc.message[:200]}"
    except (TypeError, ValueError, RecursionError) as exc:
        return f"not a valid JSON schema: {type(exc).__name__}"
    return None


# No registry that retrieves: a `$ref` to a URL is unresolvable, never fetched.
_NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()


class JsonSchemaParams(AssertionParams):
    # None: the response schema of the prompt version that answered (the registry's).
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _valid(self) -> JsonSchemaParams:
        if self.json_schema is not None:
            problem = _schema_problem(self.json_schema)
            if problem is not None:
                raise ValueError(problem)
        return self


@ASSERTIONS.register
class JsonSchema(Assertion):
    """The output is one JSON document valid under the schema written inline, else under the
    response schema of the prompt version that answered. `format` is not asserted; a `$ref`
    is resolved within the schema only."""

    type = "json_schema"
    Params = JsonSchemaParams

    def judge(self, subject: Subject) -> Verdict:
        p = self.params
        assert isinstance(p, JsonSchemaParams)
        schema = p.json_schema if p.json_schema is not None else subject.response_schema
        if schema is None:
            return Verdict(None, "no schema: none inline and the prompt version declares none")
        if p.json_schema is None:  # the registry's: checked here, where it is first seen
            problem = _schema_problem(schema)
            if problem is not None:
                return Verdict(None, f"the prompt's response schema is unusable: {problem}")
        try:
            document = json.loads(subject.result.output)
        except (ValueError, RecursionError) as exc:
            return Verdict(False, f"output is not JSON: {str(exc)[:100]}")
        try:
            validator = jsonschema.validators.validator_for(schema)(schema, registry=_NO_RETRIEVAL)
            error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        except RecursionError:
            return Verdict(None, "the schema or the document is nested too deeply to check")
        except Exception as exc:  # an unresolvable $ref, a pattern Python cannot compile
            return Verdict(None, f"the schema cannot be applied: {type(exc).__name__}")
        if error is None:
            return Verdict(True, "output matches the schema")
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        return Verdict(False, f"output does not match the schema at {where}: {error.message}")


# --- detector signals ----------------------------------------------------------------------


@ASSERTIONS.register
class NoPii(Assertion):
    """No personal data in the output, by the cheap PII detector's `pii_output` count."""

    type = "no_pii"
    Params = NoParams

    def judge(self, subject: Subject) -> Verdict:
        signals = subject.result.signals
        count = signals.get("pii_output")
        if count is None or not math.isfinite(count):
            return Verdict(None, "the PII signal was not measured")
        if count <= 0:
            return Verdict(True, "no PII in the output")
        prefix = "pii_output."
        kinds = sorted(k.removeprefix(prefix) for k in signals if k.startswith(prefix))
        return Verdict(False, f"{count:g} PII entities in the output ({', '.join(kinds)[:200]})")


@ASSERTIONS.register
class NotRefusal(Assertion):
    """The output is no refusal, by the cheap refusal detector's `refusal` flag."""

    type = "not_refusal"
    Params = NoParams

    def judge(self, subject: Subject) -> Verdict:
        flag = subject.result.signals.get("refusal")
        if flag is None or not math.isfinite(flag):
            return Verdict(None, "the refusal signal was not measured")
        return Verdict(flag <= 0, "the output is a refusal" if flag > 0 else "no refusal")


# --- model-graded --------------------------------------------------------------------------

RUBRIC_CHECKS = ("rubric", "faithfulness", "harm")  # the judge's built-in rubrics


class RubricParams(AssertionParams):
    """Either `criteria` (what to grade, in words) or a built-in `check`; passes on the judge's
    PASS verdict, or, with `min_score`, on a score (1..5) at least that."""

    criteria: str | None = Field(default=None, min_length=1, max_length=MAX_CRITERIA)
    check: Literal["rubric", "faithfulness", "harm"] | None = None
    min_score: int | None = Field(default=None, ge=1, le=5)
    model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:/\-]{1,128}$")

    @model_validator(mode="after")
    def _one_rubric(self) -> RubricParams:
        if (self.criteria is None) == (self.check is None):
            raise ValueError("give exactly one of criteria (your own words) or check")
        return self

    @property
    def key(self) -> str:
        """Which grade in `Result.grades` is this rubric's: the same rubric by the same judge
        model is graded once per answer."""
        return f"{self.model or ''}|{self.check or ''}|{self.criteria or ''}"


@ASSERTIONS.register
class Rubric(Assertion):
    """A judge model, sent a normal request through a pool, grades the answer."""

    type = "rubric"
    Params = RubricParams

    def judge(self, subject: Subject) -> Verdict:
        p = self.params
        assert isinstance(p, RubricParams)
        grade = subject.result.grades.get(p.key)
        if grade is None:
            return Verdict(None, "the answer was not graded")
        said = f"judge: {grade.message}"[:MAX_MESSAGE]
        if p.min_score is not None:
            if grade.score is None:
                return Verdict(None, f"the judge gave no score; {said}")
            ok = grade.score >= p.min_score
            return Verdict(ok, f"score {grade.score} (min {p.min_score}); {said}")
        if grade.passed is None:
            return Verdict(None, f"the judge gave no verdict; {said}")
        return Verdict(grade.passed, f"{'PASS' if grade.passed else 'FAIL'}; {said}")


# --- numbers the runner measured -----------------------------------------------------------

Op = Literal["<", "<=", "==", "!=", ">=", ">"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
}


class SignalParams(AssertionParams):
    name: str = Field(min_length=1, max_length=100)  # e.g. pii_output, refusal, toxicity
    op: Op
    value: float = Field(allow_inf_nan=False)


@ASSERTIONS.register
class SignalBound(Assertion):
    """A detector signal the runner measured compares to a value: `pii_output <= 0`,
    `refusal == 0`, `toxicity < 0.5`."""

    type = "signal"
    Params = SignalParams

    def judge(self, subject: Subject) -> Verdict:
        p = self.params
        assert isinstance(p, SignalParams)
        got = subject.result.signals.get(p.name)
        if got is None or not math.isfinite(got):
            return Verdict(None, f"signal {p.name!r} was not measured")
        ok = _OPS[p.op](got, p.value)
        return Verdict(ok, f"{p.name} = {got:g} ({'' if ok else 'not '}{p.op} {p.value:g})")


class MaxParams(AssertionParams):
    max: float = Field(ge=0, allow_inf_nan=False)


class _UpperBound(Assertion):
    """A number the runner measured is at most `max`."""

    Params = MaxParams
    what: ClassVar[str]
    unit: ClassVar[str]

    @abc.abstractmethod
    def measure(self, result: Result) -> float | None: ...

    def judge(self, subject: Subject) -> Verdict:
        p = self.params
        assert isinstance(p, MaxParams)
        got = self.measure(subject.result)
        if got is None or not math.isfinite(got):
            return Verdict(None, f"{self.what} was not measured")
        return Verdict(got <= p.max, f"{self.what} {got:g}{self.unit} (max {p.max:g}{self.unit})")


@ASSERTIONS.register
class Latency(_UpperBound):
    type = "latency"
    what = "latency"
    unit = " ms"

    def measure(self, result: Result) -> float | None:
        return result.latency_ms


@ASSERTIONS.register
class OutputTokens(_UpperBound):
    type = "output_tokens"
    what = "output tokens"
    unit = ""

    def measure(self, result: Result) -> float | None:
        return None if result.output_tokens is None else float(result.output_tokens)


@ASSERTIONS.register
class TotalTokens(_UpperBound):
    type = "total_tokens"
    what = "total tokens"
    unit = ""

    def measure(self, result: Result) -> float | None:
        if result.input_tokens is None or result.output_tokens is None:
            return None
        return float(result.input_tokens + result.output_tokens)


@ASSERTIONS.register
class Cost(_UpperBound):
    type = "cost"
    what = "cost"
    unit = " USD"

    def measure(self, result: Result) -> float | None:
        return result.cost_usd


class MinParams(AssertionParams):
    min: float = Field(ge=-1, le=1, allow_inf_nan=False)


@ASSERTIONS.register
class Similarity(Assertion):
    """The similarity to the reference answer (the runner's embeddings) is at least `min`."""

    type = "similarity"
    Params = MinParams

    def judge(self, subject: Subject) -> Verdict:
        p = self.params
        assert isinstance(p, MinParams)
        got = subject.result.similarity
        if got is None or not math.isfinite(got):
            return Verdict(None, "similarity to the reference was not measured")
        return Verdict(got >= p.min, f"similarity {got:.3f} (min {p.min:g})")


# --- judging a case ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One assertion judged on one result, after negation."""

    type: str
    passed: bool
    weight: float
    message: str


def judge(assertion: Assertion, negate: bool, weight: float, subject: Subject) -> Check:
    """The assertion's check: negated when asked; failed (whatever the negation) when it could
    not judge; failed with the reason when the driver breaks its contract by raising."""
    try:
        verdict = assertion.judge(subject)
    except Exception as exc:  # a driver bug must not stop the suite
        verdict = Verdict(None, f"assertion failed to run: {type(exc).__name__}")
    label = f"not {assertion.type}" if negate else assertion.type
    if verdict.passed is None:
        return Check(label, False, weight, verdict.message[:MAX_MESSAGE])
    passed = verdict.passed != negate
    return Check(label, passed, weight, verdict.message[:MAX_MESSAGE])
