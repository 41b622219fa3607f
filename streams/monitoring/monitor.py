"""The quality monitor: one group's closed window (all its segments) in, drift reports and
opened or resolved alerts out. Pure: the agent loads references, streaks and open alerts
from the store (`load_reference`, `restore`) and does all the IO.

State across windows, per (group, segment): the reference series; per (group, segment,
feature): the drift streak (consecutive drifted windows); per subject: the open alert.
A window evaluated again (re-emitted after a restart) recomputes its streak from the one
before it, so a replay never counts twice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from llmops.monitoring_config import MonitoringSettings, ReferenceConfig
from schemas import Alert, DriftReport, QualityWindow
from streams.monitoring import drift
from streams.monitoring.alertbook import AlertBook, Condition, rule_name, window_label
from streams.monitoring.fairness import fairness_conditions
from streams.monitoring.reference import Reference, ReferenceSeries, SeriesKey, series_of
from streams.monitoring.safety import safety_conditions

# Series (group x segment) whose references stay in memory; the least recently used beyond
# are dropped (and loaded again from the store when their group comes back).
MAX_SERIES = 10_000
MAX_STREAKS = 200_000

StreakKey = tuple[SeriesKey, str]


@dataclass(frozen=True)
class Streak:
    window_start: datetime
    before: int  # the streak up to the window before this one
    streak: int  # including this window


@dataclass(frozen=True)
class Evaluation:
    drift: list[DriftReport]
    alerts: list[Alert]  # opened or resolved by this window


class QualityMonitor:
    def __init__(self, settings: MonitoringSettings) -> None:
        drift.check_config(settings.drift)
        self.settings = settings
        self.book = AlertBook()
        self._series: OrderedDict[SeriesKey, ReferenceSeries] = OrderedDict()
        self._streaks: OrderedDict[StreakKey, Streak] = OrderedDict()

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
        self._streaks.clear()
        for key, start, streak in streaks:
            # The store's DateTime64(3, 'UTC') may come back naive: it is UTC.
            start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
            self._remember(key, Streak(start, max(streak - 1, 0), streak))

    # --- evaluation --------------------------------------------------------------------

    def evaluate(self, windows: Sequence[QualityWindow]) -> Evaluation:
        """Evaluate one group's window: `windows` are its segments (the whole group's "")."""
        if not windows:
            return Evaluation([], [])
        by_segment = {w.segment: w for w in windows}  # a repeated segment: the last wins
        current = list(by_segment.values())
        first = current[0]
        referenced: list[tuple[QualityWindow, Reference | None]] = [
            (w, self._series_for(series_of(w)).reference(w)) for w in current
        ]
        tests: list[tuple[QualityWindow, Reference, drift.DriftTest]] = []
        for window, reference in referenced:
            if reference is not None:
                found = drift.window_tests(window, reference, self.settings.drift)
                tests.extend((window, reference, test) for test in found)
        adjusted = drift.adjust([t for _, _, t in tests], self.settings.drift.fdr)
        reports: list[DriftReport] = []
        conditions: list[Condition] = []
        for (window, reference, _), test in zip(tests, adjusted, strict=True):
            streak = self._streak(window, test) if test.decisive else 0
            reports.append(_report(window, reference, test, streak))
            if test.decisive:
                conditions.append(self._drift_condition(window, reference, test, streak))
        conditions.extend(safety_conditions(referenced, self.settings.safety))
        conditions.extend(fairness_conditions(current, self.settings.fairness))
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

    def _remember(self, key: StreakKey, streak: Streak) -> None:
        self._streaks[key] = streak
        self._streaks.move_to_end(key)
        while len(self._streaks) > MAX_STREAKS:
            self._streaks.popitem(last=False)

    def _streak(self, window: QualityWindow, test: drift.DriftTest) -> int:
        key = (series_of(window), test.feature)
        known = self._streaks.get(key)
        start = window.window_start
        if known is None:
            before = 0
        elif start == known.window_start:
            before = known.before  # the same window again
        elif start > known.window_start:
            before = known.streak
        else:
            return 1 if test.drifted else 0  # an older window replayed: leave the streak be
        streak = before + 1 if test.drifted else 0
        self._remember(key, Streak(start, before, streak))
        return streak

    def _drift_condition(
        self, window: QualityWindow, reference: Reference, test: drift.DriftTest, streak: int
    ) -> Condition:
        config = self.settings.drift
        active = streak >= config.persistence
        score = test.p_adjusted if test.p_adjusted is not None else test.value
        return Condition.about(
            window,
            kind="drift",
            rule=rule_name(f"drift_{test.feature}"),
            active=active,
            severity=config.severity,
            message=(
                f"{test.feature} drifted {streak} window(s) in a row ({test.statistic} "
                f"{score:.4g}, threshold {test.threshold:g}) against {reference.description} "
                f"for {window_label(window)}"
            ),
            evidence={
                "statistic": test.statistic,
                "value": f"{test.value:.6g}",
                "p_value": "" if test.p_value is None else f"{test.p_value:.6g}",
                "p_adjusted": "" if test.p_adjusted is None else f"{test.p_adjusted:.6g}",
                "threshold": f"{test.threshold:g}",
                "streak": str(streak),
                "persistence": str(config.persistence),
                "reference": reference.description,
                "reference_size": str(test.reference_size),
                "current_size": str(test.current_size),
                "window": window.window_start.isoformat(),
                "segment": window.segment,
            },
        )


def _clamp(value: float) -> float:
    return max(-1e15, min(1e15, value))


def _report(
    window: QualityWindow, reference: Reference, test: drift.DriftTest, streak: int
) -> DriftReport:
    return DriftReport(
        ts=window.window_end,
        window_start=window.window_start,
        window_end=window.window_end,
        prompt_name=window.prompt_name,
        prompt_version=window.prompt_version,
        variant=window.variant,
        pool=window.pool,
        model=window.model,
        feature=test.feature,
        segment=window.segment,
        statistic=test.statistic,
        value=_clamp(test.value),
        p_value=test.p_value,
        p_adjusted=test.p_adjusted,
        threshold=_clamp(test.threshold),
        drifted=test.drifted,
        streak=streak,
        reference=reference.description[:512],
        reference_size=test.reference_size,
        current_size=test.current_size,
    )
