"""What a suite asserts about one result: an extension point in the shape of streams/detectors.

An assertion type is a driver: a subclass of `Assertion` with a `type` name and a strict pydantic
`Params` model, registered in `ASSERTIONS`. A suite names the type and its parameters; `build`
checks them when the suite is loaded, so a mistake is reported before anything is sent.

Drivers judge only what the runner measured: the output text, its numbers (latency, tokens,
cost), the similarity to the reference and the detector signals (llmops never imports streams:
the runner passes e.g. `{"pii_output": 0.0, "refusal": 1.0}`). A driver returns None when what it
needs was not measured; that fails the assertion whatever its negation, and says why.

Every driver passes tests/unit/evals/test_assertions_contract.py. Not yet here: the prompt's
response JSON schema (jsonschema is only a dev dependency) and the model-graded rubric (it runs
through a pool, in the runner).
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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MAX_TEXT = 1_000  # chars of an expected value, substring or message
MAX_PATTERN = 512  # chars of a regex pattern
MAX_MATCH_TEXT = 20_000  # a regex reads at most this many chars of the output
MAX_MESSAGE = 500  # chars of a judged assertion's message


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


@dataclass(frozen=True, slots=True)
class Subject:
    """What an assertion reads: the result and its case's reference answer."""

    result: Result
    reference: str | None = None


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
