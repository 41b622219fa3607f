"""`llmops_alert_open{kind,rule,severity,subject}`: 1 while an alert is open, gone once resolved.

Subjects come from data (prompt names, segment values), so the label sets are bounded: at most
`limit` open alerts are series of their own; the rest are counted in
`llmops_alert_open_overflow` until a shown one resolves and frees a place (the longest
waiting one takes it). Served by the process's `/metrics` (llmops.telemetry.metrics'
registry, as every other metric of the worker).

The bookkeeping (`OpenAlerts`) is pure; `OpenAlertGauge` applies its changes to the gauges.
What a process shows is what it has seen: the open alerts read back from the store when its
monitor (re)starts or is assigned partitions (`replace`), then each opening and resolution
its monitor emits. Every worker reads all open alerts back, so aggregate across instances with
`max by (kind, rule, severity, subject)`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import Gauge

from llmops.telemetry.metrics import NAMESPACE
from schemas.monitoring import Alert

# Open alerts shown as series of their own, and open alerts remembered beyond those (their
# count is the overflow gauge; past this many the oldest are forgotten, never memory).
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_WAITING = 100_000
LABELS = ("kind", "rule", "severity", "subject")

ALERT_OPEN = Gauge(
    "alert_open",
    "1 per open alert (quality monitor: drift, safety, fairness); removed when it resolves",
    list(LABELS),
    namespace=NAMESPACE,
)
ALERT_OPEN_OVERFLOW = Gauge(
    "alert_open_overflow",
    "Open alerts not shown in llmops_alert_open because it holds its maximum of series",
    namespace=NAMESPACE,
)

Labels = tuple[str, str, str, str]


def alert_key(alert: Alert) -> str:
    """One open alert per (kind, rule, subject): its id when it has one."""
    return alert.alert_id or f"{alert.kind}\x1f{alert.rule}\x1f{alert.subject}"


def alert_labels(alert: Alert) -> Labels:
    return (alert.kind, alert.rule, alert.severity, alert.subject)


@dataclass
class Change:
    """What one alert changed: series to set to 1, series to remove."""

    shown: list[Labels] = field(default_factory=list)
    removed: list[Labels] = field(default_factory=list)

    def extend(self, other: Change) -> None:
        self.shown += other.shown
        self.removed += other.removed


class OpenAlerts:
    """Which open alerts are shown and which wait for a place (pure)."""

    def __init__(self, limit: int = DEFAULT_LIMIT, max_waiting: int = MAX_WAITING) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"open alert series limit must be 1..{MAX_LIMIT}, got {limit}")
        self.limit = limit
        self.max_waiting = max_waiting
        self.shown: dict[str, Labels] = {}
        self.waiting: OrderedDict[str, Labels] = OrderedDict()

    @property
    def overflow(self) -> int:
        return len(self.waiting)

    def apply(self, alert: Alert) -> Change:
        key = alert_key(alert)
        if alert.state == "open":
            return self._open(key, alert_labels(alert))
        return self._resolve(key)

    def replace(self, alerts: Iterable[Alert]) -> Change:
        """Exactly these are open now (the store's open alerts, read back): the rest go."""
        open_now = {alert_key(alert): alert for alert in alerts if alert.state == "open"}
        for key in [key for key in self.waiting if key not in open_now]:
            del self.waiting[key]
        change = Change()
        for key in [key for key in self.shown if key not in open_now]:
            change.extend(self._resolve(key))
        for key, alert in open_now.items():
            change.extend(self._open(key, alert_labels(alert)))
        return change

    def _open(self, key: str, labels: Labels) -> Change:
        change = Change()
        old = self.shown.get(key)
        if old is not None:
            if old != labels:  # e.g. its severity changed: one series for it, never two
                self.shown[key] = labels
                self._unshow(old, change)
                change.shown.append(labels)
            return change
        if key in self.waiting:
            self.waiting[key] = labels
            return change
        if len(self.shown) < self.limit:
            self.shown[key] = labels
            change.shown.append(labels)
            return change
        if len(self.waiting) >= self.max_waiting:
            self.waiting.popitem(last=False)
        self.waiting[key] = labels
        return change

    def _resolve(self, key: str) -> Change:
        change = Change()
        if self.waiting.pop(key, None) is not None:
            return change
        old = self.shown.pop(key, None)
        if old is None:
            return change
        self._unshow(old, change)
        if self.waiting:
            promoted, labels = self.waiting.popitem(last=False)
            self.shown[promoted] = labels
            change.shown.append(labels)
        return change

    def _unshow(self, labels: Labels, change: Change) -> None:
        # Two open alerts with the same labels (distinct ids) share one series: it stays
        # while either is open.
        if labels not in self.shown.values():
            change.removed.append(labels)


class OpenAlertGauge:
    """Keeps `llmops_alert_open` and its overflow gauge equal to the open alerts seen."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        *,
        gauge: Gauge = ALERT_OPEN,
        overflow: Gauge = ALERT_OPEN_OVERFLOW,
    ) -> None:
        self.state = OpenAlerts(limit)
        self._gauge = gauge
        self._overflow = overflow

    def update(self, alert: Alert) -> None:
        self._apply(self.state.apply(alert))

    def replace(self, open_alerts: Iterable[Alert]) -> None:
        """Show exactly these open alerts (e.g. all the store's, read back at start)."""
        self._apply(self.state.replace(open_alerts))

    def _apply(self, change: Change) -> None:
        # Removals first: a label set removed for one alert and shown for another stays.
        for labels in change.removed:
            # KeyError: never set through this gauge (another OpenAlertGauge set it).
            with contextlib.suppress(KeyError):
                self._gauge.remove(*labels)
        for labels in change.shown:
            self._gauge.labels(*labels).set(1)
        self._overflow.set(self.state.overflow)
