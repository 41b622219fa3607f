"""The quality monitor: one group's closed window (all its segments) in, drift reports and
opened or resolved alerts out. Pure: the agent loads references, streaks and open alerts
from the store (`load_reference`, `restore`) and does all the IO.

What it checks is the configured window checks (MonitoringSettings.checks, drivers in
streams/monitors/: drift, safety, fairness by default), each given the group's windows with
their references and the shared streaks. State across windows, per (group, segment): the
reference series; per (group, segment, name): the streak (streams/monitoring/streaks.py);
per subject: the open alert.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import streams.monitors.drivers  # noqa: F401  (registers the shipped checks)
from llmops.monitoring_config import MonitoringSettings, ReferenceConfig
from schemas import Alert, DriftReport, QualityWindow
from streams.monitoring import drift
from streams.monitoring.alertbook import AlertBook, Condition
from streams.monitoring.reference import ReferenceSeries, SeriesKey, series_of
from streams.monitoring.streaks import StreakKey, Streaks
from streams.monitors.base import Referenced
from streams.monitors.factory import create_checks

# Series (group x segment) whose references stay in memory; the least recently used beyond
# are dropped (and loaded again from the store when their group comes back).
MAX_SERIES = 10_000

__all__ = ["Evaluation", "QualityMonitor", "StreakKey"]


@dataclass(frozen=True)
class Evaluation:
    drift: list[DriftReport]
    alerts: list[Alert]  # opened or resolved by this window


class QualityMonitor:
    def __init__(self, settings: MonitoringSettings) -> None:
        drift.check_config(settings.drift)
        self.settings = settings
        self.checks = create_checks(settings.checks)  # an unknown name: UnknownCheckError
        self.book = AlertBook()
        self.streaks = Streaks()
        self._series: OrderedDict[SeriesKey, ReferenceSeries] = OrderedDict()

    # --- state from the store ----------------------------------------------------------

    def reference_config(self, key: SeriesKey) -> ReferenceConfig:
        return self.settings.reference_for(key[0][0])

    def unloaded(self, windows: Iterable[QualityWindow]) -> list[SeriesKey]:
        """Series of these windows whose stored reference windows are not loaded yet."""
        return [
            key
            for key in dict.fromkeys(series_of(w) for w in windows)
            if key not in self._series or not self._series[key].loaded
        ]

    def load_reference(self, key: SeriesKey, windows: Iterable[QualityWindow]) -> None:
        self._series_for(key).load(windows)

    def restore(
        self,
        open_alerts: Iterable[Alert],
        streaks: Iterable[tuple[StreakKey, datetime, int]] = (),
    ) -> None:
        """Open alerts and the latest streaks the store holds (at start or on rebalance).

        They replace what is in memory, and the references are read again as their series
        come back: while a group was another worker's, its windows passed that one."""
        self.book.restore(open_alerts)
        self._series.clear()
        self.streaks.restore(streaks)

    # --- evaluation --------------------------------------------------------------------

    def evaluate(self, windows: Sequence[QualityWindow]) -> Evaluation:
        """Evaluate one group's window: `windows` are its segments (the whole group's "")."""
        if not windows:
            return Evaluation([], [])
        by_segment = {w.segment: w for w in windows}  # a repeated segment: the last wins
        current = list(by_segment.values())
        first = current[0]
        referenced: list[Referenced] = [
            (w, self._series_for(series_of(w)).reference(w)) for w in current
        ]
        reports: list[DriftReport] = []
        conditions: list[Condition] = []
        for check in self.checks:
            result = check.evaluate(referenced, self.settings, self.streaks)
            reports.extend(result.reports)
            conditions.extend(result.conditions)
        alerts = self.book.update(conditions, first.window_start, first.window_end)
        for window in current:
            self._series_for(series_of(window)).passed(window)
        return Evaluation(reports, alerts)

    def _series_for(self, key: SeriesKey) -> ReferenceSeries:
        series = self._series.get(key)
        if series is None:
            series = ReferenceSeries(self.reference_config(key))
            self._series[key] = series
            while len(self._series) > MAX_SERIES:
                self._series.popitem(last=False)
        else:
            self._series.move_to_end(key)
        return series
