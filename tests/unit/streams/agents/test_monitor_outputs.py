"""The monitor agent's outputs: the topics before the store, so a crash in between is
replayed against the state before the window and says its alerts again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from schemas import Alert, DriftReport
from schemas.topics import ALERTS, METRICS
from streams.agents.monitor import MonitorAgent
from streams.monitoring.alertbook import AlertBook, Condition
from streams.records import Outgoing
from tests.unit.streams.monitoring.kit import window


class Crash(Exception):
    pass


class Recorder:
    def __init__(self, calls: list[str], name: str, fail: bool = False) -> None:
        self.calls, self.name, self.fail = calls, name, fail

    async def write(self, rows: Sequence[Any]) -> list[Any]:
        self.calls.append(f"{self.name}:{len(rows)}")
        return []

    async def publish(self, outgoing: Sequence[Outgoing]) -> None:
        if self.fail:
            raise Crash
        self.calls.append("publish:" + ",".join(sorted({o.topic for o in outgoing})))


def outputs() -> tuple[list[DriftReport], list[Alert]]:
    w = window(3)
    condition = Condition.about(
        w, kind="safety", rule="refusal_rate", active=True, severity="warning",
        message="refusals", evidence={"value": "0.5"},
    )  # fmt: skip
    alerts = AlertBook().update([condition], w.window_start, w.window_end)
    report = DriftReport(
        ts=w.window_end, window_start=w.window_start, window_end=w.window_end,
        prompt_name=w.prompt_name, prompt_version=w.prompt_version, variant=w.variant,
        pool=w.pool, model=w.model, feature="latency_ms", segment="", statistic="ks",
        value=0.3, threshold=0.05, drifted=True, streak=1, reference="rolling",
        reference_size=100, current_size=100,
    )  # fmt: skip
    return [report], alerts


def agent(calls: list[str], publish_fails: bool = False) -> MonitorAgent:
    built = MonitorAgent.__new__(MonitorAgent)
    built.alert_writer = Recorder(calls, "alerts")  # type: ignore[assignment]
    built.drift_writer = Recorder(calls, "drift")  # type: ignore[assignment]
    built.delivery = Recorder(calls, "delivery", fail=publish_fails)  # type: ignore[assignment]
    return built


def test_the_topics_hear_a_window_s_changes_before_the_store_keeps_them() -> None:
    calls: list[str] = []
    reports, alerts = outputs()
    asyncio.run(agent(calls)._store_and_publish(reports, alerts))
    assert calls == [f"publish:{ALERTS.name},{METRICS.name}", "alerts:1", "drift:1"]


def test_a_crash_while_publishing_leaves_the_store_as_it_was() -> None:
    calls: list[str] = []
    reports, alerts = outputs()
    with pytest.raises(Crash):
        asyncio.run(agent(calls, publish_fails=True)._store_and_publish(reports, alerts))
    assert calls == []  # the restored book lacks the change: the replay says it again
