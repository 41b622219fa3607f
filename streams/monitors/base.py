"""The monitor contract: what a monitor observes per response and emits per closed window.

A monitor keeps no state of its own across windows: it opens a `WindowMonitor` per metric
window and the windows agent keeps that object with the window. So a window dropped on a
partition revocation, rebuilt from a replay or completed from the stored responses takes its
monitor state along with it, and restarts and rebalances need nothing more from a driver.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from schemas import Alert, DriftReport, MetricWindow
from streams.features import ResponseFeatures

# What a closed window may produce besides its MetricWindow (published on llm.metrics or
# llm.alerts, by contract).
MonitorOutput = DriftReport | Alert


class WindowMonitor(abc.ABC):
    """One monitor's state for one window."""

    @abc.abstractmethod
    def observe(self, features: ResponseFeatures) -> None:
        """Count one response of the window (each request id is handed over once)."""

    @abc.abstractmethod
    def emit(self, window: MetricWindow, now: float) -> Sequence[MonitorOutput]:
        """What the closed window produces; `window` is its aggregate, `now` the clock."""


class Monitor(abc.ABC):
    """A kind of monitor, configured once; `name` is what configuration calls it."""

    name: ClassVar[str]

    @abc.abstractmethod
    def open_window(self) -> WindowMonitor:
        """Fresh state for a window that has just received its first response."""
