"""The monitor agent: QualityWindows from llm.metrics -> drift rows and alerts.

It reads llm.metrics and keeps only the records whose event-type header says
"QualityWindow" (MetricWindows and its own DriftReports pass by, acked). A batch's quality
windows are grouped by (window, group): the quality worker publishes all segments of a
group's window together, so they arrive together. Each group's window is evaluated by the
pure monitor (streams/monitoring/monitor.py); then DriftReports are published on
llm.metrics (keyed by group) and Alerts on llm.alerts (keyed by subject), the alert rows and
the drift rows stored (in that order: the store is what a restart restores from, so it goes
last), the notifier told, and only then the batch acked.

State from the store: the reference windows of a (group, segment) are read from
`quality_windows` the first time it is seen (bounded queries, then kept in memory); open
alerts and the latest drift streaks are read at start and after every partition assignment,
so a restart or a rebalance neither opens an alert twice nor forgets a streak.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import faust
from faust.types import EventT, StreamT
from opentelemetry.trace import Tracer

from llmops.telemetry import metrics
from llmops.telemetry.conventions import llmops_attributes
from llmops.telemetry.propagation import extract_context
from llmops.telemetry.ratelog import RejectionLog
from llmops.telemetry.spans import batch_span
from schemas import Alert, DriftReport, QualityWindow
from schemas.topics import ALERTS, EVENT_TYPE_HEADER, METRICS
from streams import SERVICE, rows
from streams.agents.delivery import Delivery
from streams.features import GroupKey, group_key_text
from streams.monitoring.monitor import QualityMonitor, StreakKey
from streams.monitoring.reference import (
    SeriesKey,
    group_of,
    reference_query,
    window_from_row,
)
from streams.records import Outgoing, json_headers, message_headers
from streams.sink import Reader, TableWriter

log = logging.getLogger(__name__)

QUALITY_WINDOW = b"QualityWindow"
MAX_LINKS = 128
# Bounds of what is read back at start.
MAX_OPEN_ALERTS = 100_000
MAX_STREAK_ROWS = 200_000
STREAK_LOOKBACK_DAYS = 30

OPEN_ALERTS_SQL = (
    f"SELECT {', '.join(rows.ALERT_COLUMNS)} FROM {rows.ALERTS_TABLE} FINAL "
    f"WHERE state = 'open' LIMIT {MAX_OPEN_ALERTS}"
)
STREAKS_SQL = (
    "SELECT prompt_name, prompt_version, variant, pool, model, segment, feature, "
    "max(window_start) AS last, argMax(streak, (window_start, streak)) AS streak "
    f"FROM {rows.DRIFT_TABLE} FINAL "
    f"WHERE window_start >= now64(3) - INTERVAL {STREAK_LOOKBACK_DAYS} DAY "
    "GROUP BY prompt_name, prompt_version, variant, pool, model, segment, feature "
    f"LIMIT {MAX_STREAK_ROWS}"
)

GroupWindow = tuple[datetime, GroupKey]


class Notifier(Protocol):
    """Where opened and resolved alerts go besides the topic (streams/alerting/notify.py)."""

    async def notify(self, alerts: Sequence[Alert]) -> None: ...

    def restore(self, alerts: Sequence[Alert]) -> None: ...


def _event_type(event: EventT[bytes]) -> bytes | None:
    for key, value in message_headers(event):
        if key == EVENT_TYPE_HEADER:
            return value if isinstance(value, bytes) else str(value).encode()
    return None


def open_alert_from_row(row: dict[str, Any]) -> Alert:
    return Alert.model_validate({**row, "request_id": row.get("request_id") or None})


class MonitorAgent:
    def __init__(
        self,
        app: faust.App,
        monitor: QualityMonitor,
        drift_writer: TableWriter,
        alert_writer: TableWriter,
        reader: Reader,
        delivery: Delivery,
        notifier: Notifier,
        tracer: Tracer,
    ) -> None:
        self.app = app
        self.monitor = monitor
        self.drift_writer = drift_writer
        self.alert_writer = alert_writer
        self.reader = reader
        self.delivery = delivery
        self.notifier = notifier
        self.tracer = tracer
        self._restore_needed = True
        self._rejections = RejectionLog(log, SERVICE)

    def register(self, app: faust.App) -> None:
        app.agent(app.topic(METRICS.name), name="streams.monitor")(self.consume)
        app.on_partitions_assigned.connect(self.on_partitions_assigned)

    def close(self) -> None:
        self.drift_writer.close()
        self.alert_writer.close()
        self.reader.close()

    def on_partitions_assigned(self, sender: Any, /, *args: Any, **_: Any) -> None:
        # Groups may have moved here with their open alerts and streaks: read them again.
        self._restore_needed = True

    async def consume(self, stream: StreamT[bytes]) -> None:
        async for events in self.delivery.batches(stream):
            await self.handle(stream, events)

    async def handle(self, stream: StreamT[bytes], events: Sequence[EventT[bytes]]) -> None:
        current = [
            e for e in events if e.message.generation_id == self.app.consumer_generation_id
        ]  # the others were fetched before a rebalance and come again, unacked
        windows = self._quality_windows(current)
        if windows:
            metrics.RECORDS_CONSUMED.labels(SERVICE, METRICS.name).inc(len(windows))
            if self._restore_needed:
                await self._restore()
            await self._evaluate(windows, current)
        await self.delivery.ack(stream, current)

    def _quality_windows(self, events: Iterable[EventT[bytes]]) -> list[QualityWindow]:
        windows = []
        for event in events:
            if _event_type(event) != QUALITY_WINDOW:
                continue
            payload = event.message.value or b""
            try:
                windows.append(QualityWindow.from_bytes(payload))
            except (ValueError, RecursionError) as error:
                tp = event.message.tp
                reason = str(error).splitlines()[0][:300]
                where = f"{tp.topic}[{tp.partition}]@{event.message.offset}"
                self._rejections.rejected("invalid_quality_window", reason, where)
                metrics.count_skipped(SERVICE, tp.topic, "invalid_quality_window")
        return windows

    async def _restore(self) -> None:
        found = await self.reader.rows(OPEN_ALERTS_SQL, {})
        alerts = []
        for row in found:
            try:
                alerts.append(open_alert_from_row(row))
            except ValueError as error:
                self._rejections.rejected("unusable_stored_alert", str(error)[:300], "alerts")
        streaks: list[tuple[StreakKey, datetime, int]] = []
        for row in await self.reader.rows(STREAKS_SQL, {}):
            group = (
                row["prompt_name"],
                int(row["prompt_version"]),
                row["variant"],
                row["pool"],
                row["model"],
            )
            streaks.append((((group, row["segment"]), row["feature"]), row["last"], row["streak"]))
        self.monitor.restore(alerts, streaks)
        self.notifier.restore(alerts)
        self._restore_needed = False
        log.info("monitor restored %d open alerts and %d drift streaks", len(alerts), len(streaks))

    async def _load_references(
        self, group: GroupKey, keys: Sequence[SeriesKey], before: datetime
    ) -> None:
        """The stored reference windows of a group's new series: one query for them all."""
        if not keys:
            return
        config = self.monitor.reference_config(keys[0])
        sql, parameters = reference_query(group, [segment for _, segment in keys], config, before)
        stored: dict[str, list[QualityWindow]] = {segment: [] for _, segment in keys}
        for row in await self.reader.rows(sql, parameters):
            try:
                window = window_from_row(row)
            except ValueError as error:
                self._rejections.rejected(
                    "unusable_stored_window", str(error)[:300], "quality_windows"
                )
                continue
            stored.setdefault(window.segment, []).append(window)
        for key in keys:
            self.monitor.load_reference(key, stored[key[1]])

    async def _evaluate(
        self, windows: Sequence[QualityWindow], events: Sequence[EventT[bytes]]
    ) -> None:
        grouped: dict[GroupWindow, list[QualityWindow]] = {}
        for window in windows:
            grouped.setdefault((window.window_start, group_of(window)), []).append(window)
        reports: list[DriftReport] = []
        alerts: list[Alert] = []
        contexts = [extract_context(message_headers(e)) for e in events[:MAX_LINKS]]
        with batch_span(
            self.tracer,
            f"monitor {METRICS.name}",
            contexts,
            attributes=llmops_attributes(windows=len(windows)),
        ):
            for key in sorted(grouped, key=lambda k: (k[0], group_key_text(k[1]))):
                members = grouped[key]
                await self._load_references(key[1], self.monitor.unloaded(members), key[0])
                try:
                    evaluation = self.monitor.evaluate(members)
                except Exception as error:  # one window's bad numbers must not stop the rest
                    self._rejections.rejected(
                        "unevaluable_window",
                        str(error)[:300],
                        f"window@{key[0].isoformat()}:{group_key_text(key[1])}",
                        error=error,
                        level=logging.ERROR,
                    )
                    metrics.count_skipped(SERVICE, METRICS.name, "unevaluable_window")
                    continue
                reports.extend(evaluation.drift)
                alerts.extend(evaluation.alerts)
            await self._store_and_publish(reports, alerts)
        if alerts:
            await self.notifier.notify(alerts)

    async def _store_and_publish(
        self, reports: Sequence[DriftReport], alerts: Sequence[Alert]
    ) -> None:
        # The topics first, then the store: the store is what a restart restores the alert
        # book and the streaks from, so a crash in between replays the window against the
        # state before it and publishes its changes again (the same alert id: duplicates are
        # absorbed). Stored first, a crash in between lost them from llm.alerts for good: the
        # restored book already held the change, so the replay found nothing new to say.
        outgoing = [
            Outgoing(
                METRICS.name,
                group_key_text(
                    (r.prompt_name, r.prompt_version, r.variant, r.pool, r.model)
                ).encode(),
                r.to_bytes(),
                json_headers("DriftReport"),
            )
            for r in reports
        ]
        outgoing += [
            Outgoing(ALERTS.name, a.subject.encode(), a.to_bytes(), json_headers("Alert"))
            for a in alerts
        ]
        await self.delivery.publish(outgoing)
        # Alerts first: a window's drift rows in the store say its alerts are there too.
        refused = await self.alert_writer.write([rows.alert_row(a) for a in alerts])
        refused += await self.drift_writer.write([rows.drift_row(r) for r in reports])
        for failure in refused:  # no record of its own to dead-letter: logged and dropped
            metrics.count_skipped(SERVICE, METRICS.name, "unstorable")
            log.error("monitor output refused by the store, dropped: %s", failure.reason)
        for alert in alerts:
            log.warning("alert %s %s: %s", alert.state, alert.subject, alert.message)
