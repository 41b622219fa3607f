"""Experiment commands as events: parsing, ramps, stop, promote, hostile states refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from llmops.experiments.events import (
    ExperimentError,
    VariantSpec,
    due_ramp_step,
    parse_variant,
    promote,
    start,
    stop,
)
from schemas import Experiment

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
TWO = [VariantSpec("control", "p", 1, 50), VariantSpec("new", "p", 2, 50)]


def test_parse_variant() -> None:
    assert parse_variant("control=greet@1:50") == VariantSpec("control", "greet", 1, 50.0)
    assert parse_variant("b=greet@12") == VariantSpec("b", "greet", 12, 1.0)
    for bad in ("control=greet", "greet@1:50", "c=greet@x:1", "c=greet@1:-5", ""):
        with pytest.raises(ExperimentError):
            parse_variant(bad)


def test_start_checks_its_input() -> None:
    experiment = start("e", "p", TWO, NOW, sticky="session", guardrails=["refusal_rate"])
    assert experiment.status == "running" and experiment.revision == 1
    assert experiment.control_name == "control" and experiment.sticky == "session"
    assert experiment.shares() == {"control": 0.5, "new": 0.5}
    with pytest.raises(ExperimentError):
        start("e", "p", TWO[:1], NOW)
    with pytest.raises(ExperimentError):
        start("e", "p", [TWO[0], VariantSpec("x", "other", 2, 1)], NOW)
    with pytest.raises(ExperimentError):
        start("e", "p", [TWO[0], VariantSpec("control", "p", 2, 1)], NOW)


def test_a_ramp_steps_the_treatment_share_up_on_schedule() -> None:
    experiment = start("e", "p", TWO, NOW, ramp=[10, 25], ramp_every_s=600)
    assert experiment.shares() == {"control": 0.9, "new": 0.1}
    assert due_ramp_step(experiment, NOW + timedelta(seconds=599)) is None
    second = due_ramp_step(experiment, NOW + timedelta(seconds=600))
    assert second is not None and second.shares() == {"control": 0.75, "new": 0.25}
    assert second.ramp_applied == 2 and second.revision == 2
    final = due_ramp_step(second, NOW + timedelta(seconds=1200))
    assert final is not None and final.shares() == {"control": 0.5, "new": 0.5}
    assert due_ramp_step(final, NOW + timedelta(days=1)) is None
    with pytest.raises(ExperimentError):
        start("e", "p", TWO, NOW, ramp=[0])


def test_stop_and_promote() -> None:
    experiment = start("e", "p", TWO, NOW)
    stopped = stop(experiment, NOW, "enough")
    assert stopped.status == "stopped" and stopped.revision == 2 and stopped.reason == "enough"
    with pytest.raises(ExperimentError):
        stop(stopped, NOW, "again")
    promoted = promote(stopped, "new", NOW, "new wins")
    assert promoted.status == "promoted" and promoted.winner == "new"
    with pytest.raises(ExperimentError):
        promote(promoted, "new", NOW, "again")
    with pytest.raises(ExperimentError):
        promote(experiment, "nobody", NOW, "?")


def test_hostile_allocations_are_refused() -> None:
    doc = start("e", "p", TWO, NOW).model_dump(mode="json")
    overlapping = {**doc}
    overlapping["variants"] = [
        {**doc["variants"][0], "slots": [{"start": 0, "end": 6000}]},
        {**doc["variants"][1], "slots": [{"start": 5000, "end": 10000}]},
    ]
    gap = {**doc}
    gap["variants"] = [
        {**doc["variants"][0], "slots": [{"start": 0, "end": 4000}]},
        {**doc["variants"][1], "slots": [{"start": 5000, "end": 10000}]},
    ]
    stopped_owner = {**doc}
    stopped_owner["variants"] = [doc["variants"][0], {**doc["variants"][1], "stopped": True}]
    for bad in (overlapping, gap, stopped_owner, {**doc, "control": "ghost"}):
        with pytest.raises(ValidationError):
            Experiment.model_validate(bad)
    with pytest.raises(ValidationError):
        Experiment.model_validate(
            {**doc, "variants": [{**doc["variants"][0], "slots": [{"start": 5, "end": 5}]}]}
        )
