"""A suite from YAML: cases for one prompt, each with the assertions its answers must pass.

    name: support-answers
    prompt: support@production        # NAME@VERSION or NAME@LABEL; --prompt may override it
    threshold: 0.8                    # a case passes when its weighted score reaches this
    min_pass_rate: 1.0                # the suite passes when this share of its cases pass
    sampling: {temperature: 0.7, max_tokens: 64}   # optional; see Sampling
    defaults:
      assertions:                     # added to every case
        - {type: signal, name: pii_output, op: "<=", value: 0}
    cases:
      - id: refund
        variables: {question: "How do I get a refund?"}
        context: "Refunds within 30 days."          # optional
        reference: "Within 30 days, from Orders."   # optional
        assertions:
          - {type: contains, value: "30 days", weight: 2}
          - {type: regex, pattern: "(?i)sorry", not: true}

Strict: unknown keys, wrong types and out-of-range numbers are errors, reported one per line
with where they are (`cases.0.assertions.1: ...`). Sizes are bounded.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops.evals.assertions import ASSERTIONS, Assertion
from schemas.prompts import parse_prompt_address

MAX_CASES = 10_000
MAX_ASSERTIONS = 50  # per case, defaults included
MAX_VARIABLES = 100
MAX_VALUE_CHARS = 100_000  # a variable, a context or a reference answer
MAX_YAML_CHARS = 20_000_000

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class SuiteError(ValueError):
    """The suite text is not a valid suite; the message lists every mistake found."""


class AssertionSpec(BaseModel):
    """One assertion as written: its type, negation, weight and the driver's parameters."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True, populate_by_name=True)

    type: str = Field(min_length=1, max_length=64)
    negate: bool = Field(default=False, alias="not")
    weight: float = Field(default=1.0, gt=0, le=1000, allow_inf_nan=False)

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def build(self) -> Assertion:
        return ASSERTIONS.build(self.type, self.params())

    @model_validator(mode="after")
    def _driver_accepts(self) -> AssertionSpec:
        self.build()  # a ValueError here becomes a validation error at this assertion
        return self


class Case(BaseModel):
    model_config = _STRICT

    id: str = Field(min_length=1, max_length=200, pattern=r"^[\w.:/-]+$")
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, max_length=MAX_VARIABLES
    )
    context: str | None = Field(default=None, max_length=MAX_VALUE_CHARS)
    reference: str | None = Field(default=None, max_length=MAX_VALUE_CHARS)
    assertions: list[AssertionSpec] = Field(default_factory=list, max_length=MAX_ASSERTIONS)

    @model_validator(mode="after")
    def _bounded_values(self) -> Case:
        for key, value in self.variables.items():
            if not 1 <= len(key) <= 100:
                raise ValueError(f"variable name {key[:40]!r} must have 1..100 chars")
            if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                raise ValueError(f"variable {key!r} is longer than {MAX_VALUE_CHARS} chars")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"variable {key!r} is not a finite number")
        return self


class Defaults(BaseModel):
    model_config = _STRICT

    assertions: list[AssertionSpec] = Field(default_factory=list, max_length=MAX_ASSERTIONS)
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, max_length=MAX_VARIABLES
    )


class Sampling(BaseModel):
    """What the runner asks of the model for every case (unset: the runner's defaults;
    its seed is its own: one per repeat)."""

    model_config = _STRICT

    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)


class Suite(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200, pattern=r"^[\w.:/-]+$")
    prompt: str = Field(min_length=1, max_length=300)  # NAME@VERSION or NAME@LABEL
    threshold: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
    min_pass_rate: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
    defaults: Defaults = Field(default_factory=Defaults)
    sampling: Sampling = Field(default_factory=Sampling)
    cases: list[Case] = Field(min_length=1, max_length=MAX_CASES)

    @field_validator("prompt")
    @classmethod
    def _prompt_address(cls, prompt: str) -> str:
        parse_prompt_address(prompt, at_required=True)  # ValueError: one line, the field named
        return prompt.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Suite:
        seen: set[str] = set()
        for index, case in enumerate(self.cases):
            if case.id in seen:
                raise ValueError(f"cases.{index}: case id {case.id!r} is used twice")
            seen.add(case.id)
            if not case.assertions and not self.defaults.assertions:
                raise ValueError(f"cases.{index} ({case.id}): no assertions, none by default")
            if len(case.assertions) + len(self.defaults.assertions) > MAX_ASSERTIONS:
                raise ValueError(
                    f"cases.{index} ({case.id}): more than {MAX_ASSERTIONS} assertions"
                )
        return self

    def assertions_of(self, case: Case) -> tuple[AssertionSpec, ...]:
        """The case's assertions: the defaults first, then its own."""
        return (*self.defaults.assertions, *case.assertions)

    def variables_of(self, case: Case) -> dict[str, str | int | float | bool]:
        """The case's variables over the defaults."""
        return {**self.defaults.variables, **case.variables}

    @property
    def prompt_name(self) -> str:
        return self.prompt.partition("@")[0]  # checked as NAME@VERSION|NAME@LABEL

    @property
    def prompt_ref(self) -> str:
        """The version (digits) or label after the @."""
        return self.prompt.partition("@")[2]


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "suite"
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {msg}")
    return "\n".join(lines)


def suite_from_data(data: Any) -> Suite:
    """The suite the parsed data describes; SuiteError lists each mistake on its own line."""
    if not isinstance(data, dict):
        raise SuiteError("suite: expected a mapping with name, prompt and cases")
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(_describe(exc)) from None


def load_suite(text: str) -> Suite:
    """The suite in YAML `text` (safe_load: no tags that build objects)."""
    if len(text) > MAX_YAML_CHARS:
        raise SuiteError(f"suite: longer than {MAX_YAML_CHARS} chars")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SuiteError(f"suite: not YAML: {exc}") from None
    return suite_from_data(data)
