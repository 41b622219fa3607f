"""The experiment's life as events: each command returns its next complete state. Pure.

start -> (weights | ramp step | variant stopped)* -> stopped | promoted. Every new state has
the next `revision`, a new event id and the time of the change; the allocation moves as few
users as possible (llmops.experiments.assignment.reallocate).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmops.experiments.assignment import (
    allocation_of,
    initial_allocation,
    merged,
    reallocate,
    slot_ranges,
)
from schemas import Experiment, new_id
from schemas.experiments import MAX_REASON, RampStep
from schemas.prompts import parse_prompt_address

# NAME=PROMPT@VERSION[:WEIGHT]; the prompt reference itself is read by parse_prompt_address.
_VARIANT = re.compile(r"(?P<name>[^=]+)=(?P<prompt>[^=]+?)(?::(?P<weight>\d+(?:\.\d+)?))?")
_VARIANT_NAME = re.compile(r"[A-Za-z0-9_.:/\-]{1,128}")


class ExperimentError(ValueError):
    """A command that does not apply to the experiment as it is (a user's mistake)."""


@dataclass(frozen=True)
class VariantSpec:
    name: str
    prompt: str
    version: int
    weight: float


def parse_variant(text: str) -> VariantSpec:
    """`control=P@1:50`: variant `control` serves prompt P version 1 at weight 50 (default 1)."""
    usage = (
        f"--variant {text[:200]!r}: expected NAME=PROMPT@VERSION[:WEIGHT], e.g. control=greet@1:50"
    )
    found = _VARIANT.fullmatch(text.strip())
    if found is None or _VARIANT_NAME.fullmatch(found["name"]) is None:
        raise ExperimentError(usage)
    try:
        address = parse_prompt_address(found["prompt"], at_required=True)
    except ValueError as exc:
        raise ExperimentError(f"{usage} ({exc})") from None
    if address.version is None:  # a variant serves one pinned version, never a label
        raise ExperimentError(usage)
    weight = float(found["weight"]) if found["weight"] is not None else 1.0
    return VariantSpec(found["name"], address.name, address.version, weight)


def ramp_steps(
    variants: Sequence[VariantSpec], percents: Sequence[float], every_s: float, control: str
) -> list[RampStep]:
    """A ramp: the treatments' total share goes through `percents` (one step per `every_s`),
    split among them by their final weights, then to their final weights."""
    final = {v.name: v.weight for v in variants}
    total = sum(final.values())
    treatments = {n: w for n, w in final.items() if n != control}
    treatment_total = sum(treatments.values())
    if treatment_total <= 0:
        raise ExperimentError("a ramp needs a treatment with a positive weight")
    steps = []
    for k, percent in enumerate(percents):
        if not 0 < percent <= 100:
            raise ExperimentError(f"--ramp: {percent} is not a percentage in (0, 100]")
        weights = {n: percent * w / treatment_total for n, w in treatments.items()}
        weights[control] = 100.0 - percent
        steps.append(RampStep(after_s=k * every_s, weights=weights))
    steps.append(
        RampStep(
            after_s=len(percents) * every_s, weights={n: w / total * 100 for n, w in final.items()}
        )
    )
    return steps


def start(
    name: str,
    prompt: str,
    variants: Sequence[VariantSpec],
    now: datetime,
    *,
    sticky: str = "user",
    guardrails: Sequence[str] = (),
    ramp: Sequence[float] = (),
    ramp_every_s: float = 3600.0,
    control: str | None = None,
    revision: int = 1,
) -> Experiment:
    """A running experiment: the first variant is the control unless one is named.
    `revision`: past the newest state of an earlier experiment of the same name."""
    if len(variants) < 2:
        raise ExperimentError("an experiment needs at least two --variant")
    for variant in variants:
        if variant.prompt != prompt:
            raise ExperimentError(
                f"variant {variant.name!r} names prompt {variant.prompt!r}, not {prompt!r}"
            )
    control = control or variants[0].name
    steps = ramp_steps(variants, ramp, ramp_every_s, control) if ramp else []
    weights = dict(steps[0].weights) if steps else {v.name: v.weight for v in variants}
    allocation = initial_allocation(weights)
    return _validated(
        {
            "name": name,
            "prompt_name": prompt,
            "variants": [
                {
                    "name": v.name,
                    "prompt_version": v.version,
                    "weight": weights[v.name],
                    "slots": slot_ranges(allocation[v.name]),
                }
                for v in variants
            ],
            "status": "running",
            "control": control,
            "sticky": sticky,
            "guardrails": list(dict.fromkeys(guardrails)),
            "ramp": steps,
            "ramp_applied": 1 if steps else 0,
            "started_at": now,
            "revision": revision,
            "reason": "started",
            "ts": now,
        }
    )


def _validated(doc: Mapping[str, Any]) -> Experiment:
    try:
        return Experiment.model_validate(doc)
    except ValueError as error:
        raise ExperimentError(str(error).splitlines()[-1] if str(error) else "invalid") from error


def _next(experiment: Experiment, now: datetime, reason: str, **update: Any) -> Experiment:
    doc = experiment.model_dump()
    doc.update(update)
    doc.update(
        revision=experiment.revision + 1,
        event_id=new_id(),
        ts=now,
        reason=reason[:MAX_REASON],
    )
    return _validated(doc)


def _running(experiment: Experiment) -> None:
    if experiment.status != "running":
        raise ExperimentError(f"experiment {experiment.name!r} is {experiment.status}, not running")


def with_weights(
    experiment: Experiment, weights: Mapping[str, float], now: datetime, reason: str
) -> Experiment:
    """New weights (stopped variants stay at 0), moving the fewest users."""
    _running(experiment)
    unknown = set(weights) - {v.name for v in experiment.variants}
    if unknown:
        raise ExperimentError(f"unknown variants {sorted(unknown)}")
    new = {
        v.name: 0.0 if v.stopped else float(weights.get(v.name, v.weight))
        for v in experiment.variants
    }
    if sum(new.values()) <= 0:
        raise ExperimentError("the weights of the live variants must have a positive sum")
    current = allocation_of(experiment)
    allocation = reallocate(current, new) if experiment.allocated else initial_allocation(new)
    variants = [
        {**v.model_dump(), "weight": new[v.name], "slots": slot_ranges(allocation[v.name])}
        for v in experiment.variants
    ]
    return _next(experiment, now, reason, variants=variants)


def stop_variant(experiment: Experiment, name: str, now: datetime, reason: str) -> Experiment:
    """The variant gets no more traffic: its slots (its users) go to the control."""
    _running(experiment)
    control = experiment.control_name
    if name == control:
        raise ExperimentError("the control variant cannot be stopped; stop the experiment")
    stopped = experiment.variant(name)
    if stopped.stopped:
        raise ExperimentError(f"variant {name!r} is already stopped")
    variants = []
    for v in experiment.variants:
        doc = v.model_dump()
        if v.name == name:
            doc.update(stopped=True, weight=0.0, slots=[])
        elif v.name == control:
            ranges = [(r.start, r.end) for r in (*v.slots, *stopped.slots)]
            doc.update(weight=v.weight + stopped.weight, slots=slot_ranges(merged(ranges)))
        variants.append(doc)
    return _next(experiment, now, reason, variants=variants)


def stop(experiment: Experiment, now: datetime, reason: str) -> Experiment:
    """No more assignment: requests get the prompt's label again."""
    _running(experiment)
    return _next(experiment, now, reason, status="stopped")


def promote(experiment: Experiment, winner: str, now: datetime, reason: str) -> Experiment:
    """The experiment ends with `winner` (its version gets the production label: the caller
    moves the label, llmops.prompts)."""
    if experiment.status not in ("running", "stopped"):
        raise ExperimentError(f"experiment {experiment.name!r} is already {experiment.status}")
    variant = (
        experiment.variant(winner) if winner in {v.name for v in experiment.variants} else None
    )
    if variant is None:
        raise ExperimentError(f"experiment {experiment.name!r} has no variant {winner!r}")
    if variant.prompt_version is None:
        raise ExperimentError(f"variant {winner!r} names no prompt version to promote")
    return _next(experiment, now, reason, status="promoted", winner=winner)


def due_ramp_step(experiment: Experiment, now: datetime) -> Experiment | None:
    """The next state once the ramp's next step is due, else None."""
    if experiment.status != "running" or experiment.started_at is None:
        return None
    if experiment.ramp_applied >= len(experiment.ramp):
        return None
    step = experiment.ramp[experiment.ramp_applied]
    if (now - experiment.started_at).total_seconds() < step.after_s:
        return None
    moved = with_weights(
        experiment,
        dict(step.weights),
        now,
        f"ramp step {experiment.ramp_applied + 1} of {len(experiment.ramp)}",
    )
    return moved.model_copy(update={"ramp_applied": experiment.ramp_applied + 1})
