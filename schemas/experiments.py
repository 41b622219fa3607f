"""A/B experiments: weighted variants over the versions of one prompt.

Every change of an experiment (start, weights, a ramp step, a variant stopped by a guardrail,
stop, promote) is a new complete state of it, published on the compacted llm.experiments
topic under its name with a higher `revision`: the newest state is the experiment.

Allocation. Users are hashed to one of `SLOTS` slots (llmops.experiments.assignment); each
variant owns ranges of slots, carried in the event. A weight change moves only the slots the
shrinking variants give up to the growing ones, so as few users as possible change variant.
An experiment without slot ranges (hand-written YAML) splits by weight alone.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.base import MAX_WEIGHT, Contract, Event, Name, UtcDatetime, Version

# The allocation table's size: a weight's resolution is 1/SLOTS (0.01%).
SLOTS = 10_000
# A variant's ranges after many weight changes stay few (adjacent ones are merged); this bound
# keeps a hostile event small.
MAX_RANGES = 256
MAX_VARIANTS = 16
MAX_RAMP_STEPS = 32
MAX_REASON = 1024
# A ramp step may wait at most a year after the start.
MAX_RAMP_AFTER_S = 366 * 86_400.0

ExperimentStatus = Literal["draft", "running", "stopped", "promoted"]
# Which id of the request keeps a user on one variant (PromptRequest.user_id / session_id;
# either falls back to the other, then to the request id).
StickyKind = Literal["user", "session"]
# Rates a guardrail watches (llmops.experiments.metrics defines each over the responses).
GuardrailMetric = Literal[
    "error_rate", "refusal_rate", "pii_rate", "toxic_rate", "safety_flag_rate"
]
GUARDRAIL_METRICS: tuple[str, ...] = (
    "error_rate",
    "refusal_rate",
    "pii_rate",
    "toxic_rate",
    "safety_flag_rate",
)


class SlotRange(Contract):
    """Slots [start, end) of the allocation table."""

    start: int = Field(ge=0, le=SLOTS - 1)
    end: int = Field(gt=0, le=SLOTS)

    @model_validator(mode="after")
    def _ordered(self) -> SlotRange:
        if self.start >= self.end:
            raise ValueError("a slot range needs start < end")
        return self

    @property
    def size(self) -> int:
        return self.end - self.start


class Variant(Contract):
    name: Name
    prompt_version: Version | None = None
    weight: float = Field(ge=0.0, le=MAX_WEIGHT, allow_inf_nan=False)
    # Stopped (by a guardrail or by hand): it owns no slots, its users went to control.
    stopped: bool = False
    slots: list[SlotRange] = Field(default_factory=list, max_length=MAX_RANGES)

    @property
    def slot_count(self) -> int:
        return sum(r.size for r in self.slots)


class RampStep(Contract):
    """From `after_s` seconds after the start on, the variants' weights are `weights`."""

    after_s: float = Field(ge=0.0, le=MAX_RAMP_AFTER_S, allow_inf_nan=False)
    weights: dict[Name, Annotated[float, Field(ge=0.0, le=MAX_WEIGHT, allow_inf_nan=False)]] = (
        Field(min_length=1, max_length=MAX_VARIANTS)
    )


class Experiment(Event):
    """An A/B experiment over versions of one prompt (llm.experiments, compacted, key name)."""

    name: Name
    prompt_name: Name
    variants: list[Variant] = Field(min_length=1, max_length=MAX_VARIANTS)
    status: ExperimentStatus = "running"
    # The variant the others are compared with; None: the first one.
    control: Name | None = None
    sticky: StickyKind = "user"
    guardrails: list[GuardrailMetric] = Field(default_factory=list, max_length=8)
    ramp: list[RampStep] = Field(default_factory=list, max_length=MAX_RAMP_STEPS)
    # Ramp steps already applied (the next one is ramp[ramp_applied]).
    ramp_applied: int = Field(default=0, ge=0, le=MAX_RAMP_STEPS)
    started_at: UtcDatetime | None = None
    # One more for every new state: the newest state wins, a stale one is ignored.
    revision: int = Field(default=0, ge=0, le=2**31 - 1)
    # Why this state (who changed what), and the winner once promoted.
    reason: str = Field(default="", max_length=MAX_REASON)
    winner: Name | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if sum(v.weight for v in self.variants if not v.stopped) <= 0:
            raise ValueError("experiment variants need a positive total weight")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control {self.control!r} is not a variant")
        if self.winner is not None and self.winner not in names:
            raise ValueError(f"winner {self.winner!r} is not a variant")
        if self.variants[names.index(self.control_name)].stopped:
            raise ValueError("the control variant cannot be stopped")
        for step in self.ramp:
            unknown = set(step.weights) - set(names)
            if unknown:
                raise ValueError(f"ramp step names unknown variants {sorted(unknown)}")
        if self.ramp_applied > len(self.ramp):
            raise ValueError("more ramp steps applied than the ramp has")
        self._check_slots()
        return self

    def _check_slots(self) -> None:
        ranges = [(r.start, r.end, v) for v in self.variants for r in v.slots]
        if not ranges:
            return
        ranges.sort(key=lambda item: item[0])
        edge = 0
        for start, end, variant in ranges:
            if start != edge:
                raise ValueError("slot ranges must cover every slot exactly once")
            if variant.stopped:
                raise ValueError(f"stopped variant {variant.name!r} owns slots")
            edge = end
        if edge != SLOTS:
            raise ValueError("slot ranges must cover every slot exactly once")

    @property
    def control_name(self) -> str:
        return self.control or self.variants[0].name

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    @property
    def allocated(self) -> bool:
        """Whether users are assigned by slot ranges (else by weight)."""
        return any(v.slots for v in self.variants)

    def shares(self) -> dict[str, float]:
        """Each variant's share of the traffic now (stopped ones 0)."""
        if self.allocated:
            return {v.name: v.slot_count / SLOTS for v in self.variants}
        total = sum(v.weight for v in self.variants if not v.stopped)
        return {v.name: (0.0 if v.stopped else v.weight / total) for v in self.variants}
