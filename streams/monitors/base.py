"""The window-check contract: one group's closed window in, drift reports and alert
conditions out.

The quality monitor (streams/monitoring/monitor.py) hands every configured check the same
group window: each segment's QualityWindow with its reference (None while the reference has
too little data). A check is pure and keeps no state of its own: what must last across
windows (how many in a row a check found something) lives in the `Streaks` it is given, which
the agent restores from the store after a restart or a rebalance, and the open alerts live in
the monitor's alert book, which opens, keeps and resolves them from the conditions. So a
driver needs nothing more to be correct across restarts, replays and rebalances.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from llmops.monitoring_config import MonitoringSettings
from schemas import DriftReport, QualityWindow
from streams.monitoring.alertbook import Condition
from streams.monitoring.reference import Reference
from streams.monitoring.streaks import Streaks

# A segment's window and its reference (None: not enough reference data yet).
Referenced = tuple[QualityWindow, Reference | None]


@dataclass(frozen=True)
class CheckResult:
    """Rows for the `drift` table, and conditions for the alert book: an active one opens
    (or keeps) the alert of its subject, an inactive one resolves it."""

    reports: Sequence[DriftReport] = ()
    conditions: Sequence[Condition] = ()


class WindowCheck(abc.ABC):
    """A kind of check, built once; `name` is what LLMOPS_MONITORING's `checks` calls it."""

    name: ClassVar[str]

    @abc.abstractmethod
    def evaluate(
        self, windows: Sequence[Referenced], settings: MonitoringSettings, streaks: Streaks
    ) -> CheckResult:
        """Check one group's window (all its segments, the whole group's segment "")."""
