"""Monitors are built by name from a registry; a name no driver provides is refused."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from schemas import MetricWindow
from streams.features import ResponseFeatures
from streams.monitors.base import Monitor, MonitorOutput, WindowMonitor
from streams.monitors.factory import (
    MONITORS,
    MonitorRegistry,
    UnknownMonitorError,
    create_monitors,
)


class CountingWindow(WindowMonitor):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def observe(self, features: ResponseFeatures) -> None:
        self.seen.append(features.request_id)

    def emit(self, window: MetricWindow, now: float) -> Sequence[MonitorOutput]:
        return []


class Counting(Monitor):
    """A test-only driver: it counts and never reports."""

    name = "counting"

    def open_window(self) -> WindowMonitor:
        return CountingWindow()


def registry() -> MonitorRegistry:
    monitors = MonitorRegistry()
    monitors.register(Counting.name, Counting)
    return monitors


def test_a_registered_driver_is_built_by_name() -> None:
    [monitor] = create_monitors(["counting"], registry())
    assert isinstance(monitor, Counting)
    window = monitor.open_window()
    assert window is not monitor.open_window()  # each window gets its own state


def test_monitors_are_built_in_the_configured_order() -> None:
    monitors = registry()
    monitors.register("other", Counting)
    assert [type(m) for m in create_monitors(["other", "counting"], monitors)] == [
        Counting,
        Counting,
    ]
    assert create_monitors([], monitors) == []


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownMonitorError, match=r"unknown monitor 'drfit' \(known: counting\)"):
        create_monitors(["counting", "drfit"], registry())


def test_a_name_is_registered_once() -> None:
    monitors = registry()
    with pytest.raises(ValueError, match="registered already"):
        monitors.register("counting", Counting)


def test_the_shipped_registry_refuses_what_it_lacks() -> None:
    with pytest.raises(UnknownMonitorError, match="no-such-monitor"):
        create_monitors(["no-such-monitor"], MONITORS)
