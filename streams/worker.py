"""The metrics worker: a faust app from Settings, with its agents declared in streams/agents.

Agents (each consumes raw bytes, so undecodable input can be dead-lettered whole):
- the table sinks declared in `streams.agents.sinks.SINKS`: llm.requests -> `requests`
  (what it cannot decode is skipped and counted: the router owns llm.requests' dead
  letters), llm.responses -> `responses` plus one ResponseFeatures record per response on
  the internal topic `<app id>-response-features`, keyed by its window group, and
  llm.dlq -> `dead_letters`;
- the windows agent: <app id>-response-features -> tumbling windows -> `metric_windows`
  table + llm.metrics.

Acks and commits. faust commits, per partition, the offset below the first message no
stream has acknowledged yet (`Consumer._new_offset` walks the consecutive acked offsets).
Each agent iterates `stream.noack_take(n, within)` and acks an event explicitly only after
everything it produced is stored (table rows), acknowledged by the broker (records for
other topics, producer acks=all) or, for a response's window contribution, emitted with its
window. A worker that stops or crashes before that leaves the offsets uncommitted: the
records are consumed again and every output is idempotent. `stream_wait_empty` is off: a
rebalance does not wait for windows to close; the new owner replays what was not acked.

Idempotence. Rows carry their ids and the tables are ReplacingMergeTree ordered by them
(request_id; source topic/partition/offset + service; window start + group), so replayed
rows collapse (the latest insert wins). A window counts each request id once; how a
re-emitted window stays the union of what it ever counted: streams/agents/windows.py.

Window ownership. llm.responses is keyed by request id, so one group's responses are spread
over every partition and every worker. The responses sink therefore repartitions: it
publishes each response's features keyed by its group, so every (prompt, version, variant,
pool, model) lands on one partition of the features topic and is aggregated by the one
worker that owns that partition. On revocation that worker drops those windows unemitted
and the new owner rebuilds them from the unacknowledged records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from llmops.clickhouse.client import login_for
from llmops.config import Settings
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.signing import keys_from_settings
from llmops.telemetry.setup import get_tracer
from schemas.topics import (
    ALERTS,
    DLQ,
    EXPERIMENTS,
    FEEDBACK,
    METRICS,
    PROMPTS,
    REQUESTS,
    RESPONSES,
    STREAMS_APP_ID,
    TopicSpec,
    response_features_topic,
)
from streams import retention, rows
from streams.agents.delivery import Delivery
from streams.agents.feedback import EXPERIMENT_SINKS
from streams.agents.guardrail import GuardrailAgent
from streams.agents.history import HISTORY_SINKS
from streams.agents.monitor import MonitorAgent
from streams.agents.sinks import SINKS, SinkAgent, SinkContext, sink_converter
from streams.agents.windows import WindowsAgent
from streams.alerting.notify import AlertNotifier
from streams.detectors import drivers  # noqa: F401  (registers the shipped drivers)
from streams.detectors.base import Detector
from streams.detectors.factory import UnknownDetectorError, create_detectors
from streams.judge.requests import JudgeConfig
from streams.monitoring.monitor import QualityMonitor
from streams.monitors.factory import UnknownCheckError
from streams.privacy import text_policy
from streams.quality import QualityRules
from streams.sink import Reader, TableWriter
from streams.windows import WindowAccumulator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    """Knobs of one worker that Settings does not hold."""

    app_id: str = STREAMS_APP_ID
    # faust's data directory; default Settings.data_dir / "faust".
    data_dir: Path | None = None
    # Wait this long past a window's end before emitting it (default from sink_flush_s).
    window_grace_s: float | None = None
    # Keep an emitted window this long after its last response, for late responses.
    window_retain_s: float | None = None
    # How often due windows are emitted (default: a quarter window, at most 0.25 s).
    tick_s: float | None = None
    # faust's web server: None keeps it off; a port serves it on 127.0.0.1 only.
    web_port: int | None = None


def topics_needed(options: WorkerOptions) -> list[TopicSpec]:
    """Topics the worker reads or writes, at the sizes they must be created with."""
    return [
        REQUESTS,
        RESPONSES,
        DLQ,
        METRICS,
        ALERTS,
        PROMPTS,  # the registry's history (streams/agents/history.py)
        EXPERIMENTS,  # experiment history, guardrail stops (streams/agents/guardrail.py)
        FEEDBACK,  # apps' feedback (streams/agents/feedback.py)
        response_features_topic(options.app_id),
    ]


def faust_settings(settings: Settings, options: WorkerOptions) -> dict[str, Any]:
    """faust configuration; ENVIRONMENT.md's Tansu notes explain the broker knobs."""
    data_dir = options.data_dir or settings.data_dir / "faust"
    web: dict[str, Any] = {"web_enabled": False}
    if options.web_port is not None:
        web = {
            "web_enabled": True,
            "web_port": options.web_port,
            "web_bind": "127.0.0.1",
            "web_host": "127.0.0.1",
        }
    return {
        "broker": [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        "broker_credentials": KafkaSecurity.from_settings(settings).faust_credentials(),
        "store": "memory://",  # no tables: window state is rebuilt from unacked records
        "datadir": str(data_dir),
        "key_serializer": "raw",
        "value_serializer": "raw",  # decode ourselves, so undecodable bytes can be dead-lettered
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": 6,
        "broker_heartbeat_interval": 1,
        "broker_commit_interval": settings.commit_interval_s,
        "producer_acks": -1,
        "stream_wait_empty": False,
        "topic_disable_leader": True,
        "topic_allow_declare": False,  # topics are created at their final size beforehand
        "worker_redirect_stdouts": False,
        **web,
    }


def window_accumulator(settings: Settings, options: WorkerOptions) -> WindowAccumulator:
    window_s = settings.metrics_window_s
    grace_s = options.window_grace_s
    if grace_s is None:
        # A window is emitted this long after its end (freshness: window + grace + tick);
        # responses later than that re-emit it, fuller (streams/windows.py).
        grace_s = max(1.0, settings.sink_flush_s)
    retain_s = options.window_retain_s
    if retain_s is None:
        retain_s = max(60.0, 3 * window_s)
    return WindowAccumulator(
        window_s,
        grace_s=grace_s,
        retain_s=retain_s,
        segment_max_values=settings.segment_max_values,
        quality_rules=QualityRules.from_monitoring(settings.monitoring),
    )


def configured_detectors(settings: Settings) -> tuple[Detector, ...]:
    """The detectors Settings.detectors names, built once; an unknown name refuses the
    start in one line, as a missing signing key does (llmops.runtime)."""
    try:
        rates = {
            "embedding": settings.embedding_sample_rate,
            "deep": settings.deep_sample_rate,
        }
        return tuple(create_detectors(settings.detectors, sample_rates=rates))
    except UnknownDetectorError as exc:
        raise SystemExit(f"cannot start: {exc} in LLMOPS_DETECTORS") from None


def configured_monitor(settings: Settings) -> QualityMonitor:
    """The quality monitor with the window checks LLMOPS_MONITORING names; an unknown name
    refuses the start in one line."""
    try:
        return QualityMonitor(settings.monitoring)
    except UnknownCheckError as exc:
        raise SystemExit(f"cannot start: {exc} in LLMOPS_MONITORING's checks") from None


def configured_judge(settings: Settings) -> JudgeConfig:
    """Settings.judge_*, checked once; an unknown check or a bad model name refuses the start
    in one line. App "llmops-judge" marks the judge's requests and responses (streams/judge/)."""
    try:
        return JudgeConfig.from_settings(settings)
    except ValueError as exc:
        raise SystemExit(f"cannot start: {exc} in LLMOPS_JUDGE_*") from None


class MetricsWorker:
    """The declared sinks and the windows agent over one faust app; `build_worker` wires it."""

    def __init__(self, app: faust.App, settings: Settings, options: WorkerOptions) -> None:
        self.app = app
        self.settings = settings
        self.options = options
        self.tracer = get_tracer("llmops.streams")
        delivery = Delivery(app, settings.sink_batch_size, settings.sink_flush_s)
        url = settings.clickhouse_url
        login = login_for(url, settings)  # where the URL names no user
        features_topic = response_features_topic(options.app_id).name
        context = SinkContext(
            text_policy(settings.store_text),
            keys_from_settings(settings),
            features_topic,
            configured_detectors(settings),
            segment_attributes=tuple(settings.segment_attributes),
            judge=configured_judge(settings),
        )
        # Keyed by the topic each sink reads.
        self.sinks: dict[str, SinkAgent[Any]] = {
            sink.topic.name: SinkAgent(
                sink,
                context,
                sink_converter(
                    sink.rejects, self.tracer, options.app_id, settings.max_message_bytes
                ),
                TableWriter(url, sink.table, sink.columns, login=login),
                delivery,
                self.tracer,
            )
            for sink in (*SINKS, *HISTORY_SINKS, *EXPERIMENT_SINKS)
        }
        self.windows = WindowsAgent(
            app,
            features_topic,
            window_accumulator(settings, options),
            options.tick_s or min(0.25, settings.metrics_window_s / 4),
            TableWriter(url, rows.METRIC_WINDOWS_TABLE, rows.METRIC_WINDOW_COLUMNS, login=login),
            Reader(url, login=login),
            delivery,
            self.tracer,
            quality_writer=TableWriter(
                url, rows.QUALITY_WINDOWS_TABLE, rows.QUALITY_WINDOW_COLUMNS, login=login
            ),
            segment_attributes=settings.segment_attributes,
        )
        # Experiments: ramps and guardrails (streams/agents/guardrail.py), on one worker.
        self.guardrail = GuardrailAgent.build(url, login, delivery, context.signing, settings)
        # Its own connection: retried until migrations ran, it must not drop the seeding's.
        self.retention_reader = Reader(url, login=login)
        # Quality monitoring: QualityWindows on llm.metrics -> drift rows, alerts.
        self.monitor: MonitorAgent | None = None
        if settings.monitoring.enabled:
            self.monitor = MonitorAgent(
                app,
                configured_monitor(settings),
                TableWriter(url, rows.DRIFT_TABLE, rows.DRIFT_COLUMNS, login=login),
                TableWriter(url, rows.ALERTS_TABLE, rows.ALERT_COLUMNS, login=login),
                Reader(url, login=login),
                delivery,
                AlertNotifier(settings),
                self.tracer,
            )

    def register(self) -> None:
        for sink in self.sinks.values():
            sink.register(self.app)
        self.windows.register(self.app)
        self.guardrail.register(self.app)
        if self.monitor is not None:
            self.monitor.register(self.app)
        self.app.task(self.apply_retention)

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()
        self.windows.close()
        self.guardrail.close()
        if self.monitor is not None:
            self.monitor.close()
        self.retention_reader.close()

    async def apply_retention(self) -> None:
        """Set the text tables' TTL to Settings.retention_days (retried until they exist)."""
        days = self.settings.retention_days
        applied = await self.retention_reader.call(
            "setting the retention TTL",
            lambda client: retention.apply_retention(client, days),
        )
        if applied:
            log.info("retention of text tables set to %s: %s", days or "forever", applied)


def build_worker(settings: Settings, options: WorkerOptions | None = None) -> MetricsWorker:
    """A faust app with the worker's agents registered (not started); the app is `.app`."""
    options = options or WorkerOptions()
    conf = faust_settings(settings, options)
    # faust creates its data directory without parents.
    Path(conf["datadir"]).mkdir(parents=True, exist_ok=True)
    app = faust.App(options.app_id, **conf)
    worker = MetricsWorker(app, settings, options)
    worker.register()
    return worker


def create_app(settings: Settings, options: WorkerOptions | None = None) -> faust.App:
    """The worker's faust app, ready for `faust.Worker(app).execute_from_commandline()`."""
    return build_worker(settings, options).app
