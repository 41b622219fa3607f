"""Quality monitoring on the real worker (`python -m streams`), the real broker (Tansu) and
the real ClickHouse engine (chDB): responses in, quality windows, drift rows and alerts out.

Windows are 2 s of event time. The responses carry timestamps in the next few windows, so the
worker closes them one after the other as a live stream would; "within two windows" is read
from the alert's window, never from the wall clock.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from llmops.clickhouse.client import connect
from llmops.kafka.topics import ensure_topics
from schemas import Alert, InferenceResult, Timings, Usage
from schemas.topics import ALERTS, RESPONSES
from streams.worker import WorkerOptions, topics_needed
from tests.integration.streams.test_worker import Worker, send_all, wait_for

pytestmark = pytest.mark.integration

WINDOW_S = 2
WINDOWS = 5  # W0..W4; the planted rise starts at W3
RISE = 3
WAIT_S = 120.0  # a deadline against a hung test, never a measurement

NORMAL = "The capital of France is Paris, on the Seine."
REFUSAL = "I'm sorry, but I can't help with that."
LEAK = "Sure, write to ada.lovelace@example.com for the details."

MONITORING = {
    "safety": [
        {"rate": "refusal", "max_rate": 0.2, "min_responses": 10},
        {"rate": "pii_output", "max_rate": 0.05, "min_responses": 10, "severity": "critical"},
    ],
    "drift": {"min_current": 10, "min_reference": 10},
    "fairness": {"min_group_responses": 20},
    "default_reference": {"mode": "baseline", "baseline_responses": 60},
}


@pytest.fixture
def producer(bootstrap: str) -> Iterator[KafkaProducer]:
    ensure_topics(bootstrap, topics_needed(WorkerOptions()))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    yield producer
    producer.close()


@pytest.fixture
def run_id() -> str:
    return "mon" + uuid.uuid4().hex[:10]


class Store:
    def __init__(self, url: str) -> None:
        self.client = connect(url)

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        return list(self.client.query(sql, parameters=params).named_results())

    def drift_done(self, run_id: str, groups: int, window_start: datetime) -> bool:
        """`groups` groups of the run have the drift rows of their window at `window_start`."""
        found = self.query(
            "SELECT DISTINCT prompt_name, prompt_version FROM drift FINAL "
            "WHERE startsWith(prompt_name, {p:String}) AND window_start = {w:DateTime64(3)} "
            "AND segment = ''",
            p=run_id,
            w=window_start,
        )
        return len(found) >= groups

    def alerts(self, run_id: str) -> list[Alert]:
        rows = self.query(
            "SELECT * EXCEPT inserted_at FROM alerts FINAL "
            "WHERE startsWith(prompt_name, {p:String}) ORDER BY window_start, subject",
            p=run_id,
        )
        return [Alert.model_validate({**r, "request_id": r["request_id"] or None}) for r in rows]


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    store = Store(database)
    yield store
    store.client.close()


def first_window() -> datetime:
    """The start of a window a few seconds ahead, on the worker's 2 s grid."""
    now = datetime.now(UTC).timestamp()
    return datetime.fromtimestamp((int(now) // WINDOW_S + 2) * WINDOW_S, UTC)


def result(
    request_id: str,
    ts: datetime,
    prompt: str,
    version: int,
    text: str,
    locale: str | None = None,
    latency_ms: float = 100.0,
) -> InferenceResult:
    return InferenceResult(
        request_id=request_id,
        ts=ts,
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=10, output_tokens=12),
        timings=Timings(queue_ms=1.0, ttft_ms=10.0, total_ms=latency_ms),
        pool="cpu",
        model="tiny",
        prompt_name=prompt,
        prompt_version=version,
        variant="a",
        attributes={"locale": locale} if locale else {},
    )


def planted(run_id: str, w0: datetime) -> list[InferenceResult]:
    """Per window: prompt `run_id` v1 (refusals and leaks from W3 on) and v2 (steady), 20
    each; prompt `<run_id>f` whose locale=de is refused 60% of the time against 5% for en
    and fr; prompt `<run_id>e` whose three locales are alike (10% refused each); 40 per
    locale and window."""
    results = []
    for k in range(WINDOWS):
        start = w0 + timedelta(seconds=WINDOW_S * k)

        def at(i: int, start: datetime = start) -> datetime:
            return start + timedelta(milliseconds=10 * i)

        for i in range(20):
            latency = 100.0 + 5 * (i % 7)
            rise = k >= RISE
            text = (
                REFUSAL if rise and i % 2 == 0 else LEAK if rise and i % 10 in (1, 3, 5) else NORMAL
            )
            results.append(result(f"{run_id}-v1-{k}-{i}", at(i), run_id, 1, text, None, latency))
            results.append(result(f"{run_id}-v2-{k}-{i}", at(i), run_id, 2, NORMAL, None, latency))
        for locale in ("en", "fr", "de"):
            for i in range(40):
                latency = 100.0 + 5 * (i % 7)
                refused = i < 24 if locale == "de" else i < 2
                text = REFUSAL if refused else NORMAL
                rid = f"{run_id}-f-{k}-{locale}-{i}"
                results.append(result(rid, at(i), f"{run_id}f", 1, text, locale, latency))
                text = REFUSAL if i % 10 == 0 else NORMAL
                rid = f"{run_id}-e-{k}-{locale}-{i}"
                results.append(result(rid, at(i), f"{run_id}e", 1, text, locale, latency))
    return results


def alerts_on_topic(
    bootstrap: str, run_id: str, enough: Callable[[list[Alert]], bool]
) -> list[Alert]:
    consumer = KafkaConsumer(
        ALERTS.name,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        enable_auto_commit=False,
    )
    found: list[Alert] = []
    try:
        wait_for(lambda: _poll(consumer, run_id, found) and enough(found), "alerts", None, WAIT_S)
        return found
    finally:
        consumer.close()


def _poll(consumer: KafkaConsumer, run_id: str, found: list[Alert]) -> bool:
    for records in consumer.poll(timeout_ms=250).values():
        for record in records:
            if record.value and run_id.encode() in record.value:
                alert = Alert.from_bytes(record.value)
                assert record.key == alert.subject.encode()
                found.append(alert)
    return True


def test_planted_rises_and_disparities_alert_and_nothing_else_does(
    bootstrap: str,
    database: str,
    store: Store,
    producer: KafkaProducer,
    run_id: str,
    tmp_path: Path,
) -> None:
    env = {
        "LLMOPS_METRICS_WINDOW_S": str(WINDOW_S),
        "LLMOPS_SEGMENT_ATTRIBUTES": '["locale"]',
        "LLMOPS_MONITORING": json.dumps(MONITORING),
    }
    worker = Worker(bootstrap, database, tmp_path, f"streams-{run_id}", env)
    try:
        wait_for(worker.ready, "the worker to start", worker, WAIT_S)
        w0 = first_window()
        results = planted(run_id, w0)
        send_all(producer, RESPONSES.name, [(r.request_id.encode(), r.to_bytes()) for r in results])
        rise = w0 + timedelta(seconds=WINDOW_S * RISE)
        last = w0 + timedelta(seconds=WINDOW_S * (WINDOWS - 1))

        def v1_alerted(found: list[Alert]) -> bool:
            rules = {a.rule for a in found if a.prompt_name == run_id and a.prompt_version == 1}
            return {"refusal_rate", "pii_output_rate"} <= rules

        published = alerts_on_topic(bootstrap, run_id, v1_alerted)
        wait_for(
            lambda: store.drift_done(run_id, 4, last), "the last windows' drift", worker, WAIT_S
        )
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert "Traceback" not in worker.log()

    # The planted rise: on llm.alerts within two windows, for v1 only, with its evidence.
    v1 = {a.rule: a for a in published if a.prompt_name == run_id and a.prompt_version == 1}
    for rule in ("refusal_rate", "pii_output_rate"):
        alert = v1[rule]
        assert alert.state == "open" and alert.kind == "safety" and alert.segment == ""
        assert alert.window_start is not None
        assert rise <= alert.window_start <= rise + timedelta(seconds=WINDOW_S)
        assert float(alert.evidence["value"]) > float(alert.evidence["threshold"])
    assert v1["pii_output_rate"].severity == "critical"

    stored = store.alerts(run_id)
    # Nothing for the steady version, nothing before the rise, one alert per subject.
    assert [a for a in stored if a.prompt_name == run_id and a.prompt_version == 2] == []
    assert all(a.window_start >= rise for a in stored if a.prompt_name == run_id)  # type: ignore[operator]
    subjects = [a.subject for a in stored if a.state == "open"]
    assert len(subjects) == len(set(subjects))
    # The planted disparity is flagged for locale=de only; equal groups are not flagged.
    fairness = {(a.prompt_name, a.rule, a.segment) for a in stored if a.kind == "fairness"}
    assert (f"{run_id}f", "fairness_refusal", "locale=de") in fairness
    assert {(p, s) for p, _, s in fairness} == {(f"{run_id}f", "locale=de")}
    disparity = next(a for a in stored if a.rule == "fairness_refusal")
    assert float(disparity.evidence["low"]) > 1.25
    assert disparity.evidence["reference"] == "best group locale=en"
    # Drift rows for every tested window, against the baseline.
    drift = store.query(
        "SELECT prompt_version, feature, statistic, reference FROM drift FINAL "
        "WHERE prompt_name = {p:String} AND segment = '' AND window_start = {w:DateTime64(3)}",
        p=run_id,
        w=last,
    )
    assert {(r["prompt_version"], r["feature"], r["statistic"]) for r in drift} >= {
        (1, "latency_ms", "ks"),
        (2, "latency_ms", "ks"),
    }
    assert {r["reference"] for r in drift} == {"baseline:first 60 responses"}


def steady_then(
    run_id: str, w0: datetime, texts: list[str], first: int = 0
) -> list[InferenceResult]:
    """Prompt `run_id` v1, 20 responses per window from `w0` on: window k answers texts[k]
    to every other request (NORMAL to the rest)."""
    results = []
    for k, text in enumerate(texts):
        start = w0 + timedelta(seconds=WINDOW_S * k)
        for i in range(20):
            ts = start + timedelta(milliseconds=10 * i)
            answer = text if i % 2 == 0 else NORMAL
            rid = f"{run_id}-{first + k}-{i}"
            results.append(result(rid, ts, run_id, 1, answer, None, 100.0 + 5 * (i % 7)))
    return results


def test_a_kill_9_neither_reopens_nor_forgets_an_open_alert(
    bootstrap: str,
    database: str,
    store: Store,
    producer: KafkaProducer,
    run_id: str,
    tmp_path: Path,
) -> None:
    env = {"LLMOPS_METRICS_WINDOW_S": str(WINDOW_S), "LLMOPS_MONITORING": json.dumps(MONITORING)}
    app_id = f"streams-{run_id}"

    def opened() -> list[Alert]:
        return [a for a in store.alerts(run_id) if a.rule == "refusal_rate"]

    worker = Worker(bootstrap, database, tmp_path, app_id, env)
    try:
        wait_for(worker.ready, "the worker to start", worker, WAIT_S)
        results = steady_then(run_id, first_window(), [NORMAL, NORMAL, NORMAL, REFUSAL])
        send_all(producer, RESPONSES.name, [(r.request_id.encode(), r.to_bytes()) for r in results])
        wait_for(lambda: len(opened()) == 1, "the refusal alert", worker, WAIT_S)
    finally:
        worker.proc.kill()  # kill -9: nothing flushed, no offset committed on the way out
        worker.proc.wait()
    [alert] = opened()
    assert alert.state == "open"

    worker = Worker(bootstrap, database, tmp_path, app_id, env)  # same group: resumes
    try:
        wait_for(worker.ready, "the worker to restart", worker, WAIT_S)
        # Still refusing (no second alert), then answering again (the same alert resolves).
        results = steady_then(run_id, first_window(), [REFUSAL, NORMAL], first=4)
        send_all(producer, RESPONSES.name, [(r.request_id.encode(), r.to_bytes()) for r in results])
        wait_for(lambda: opened()[0].state == "resolved", "the resolution", worker, WAIT_S)
        assert re.search(r"monitor restored [1-9]\d* open alerts", worker.log())
    finally:
        assert worker.stop() == 0
    [resolved] = opened()
    assert (resolved.alert_id, resolved.opened_at) == (alert.alert_id, alert.opened_at)
    # The drift streak begun before the restart (1 drifted window) went on after it: the
    # first window after the restart is the second drifted one, which opens the alert.
    drift_alerts = [a for a in store.alerts(run_id) if a.rule == "drift_output_chars"]
    assert [a.evidence["streak"] for a in drift_alerts] == ["2"]
    assert drift_alerts[0].window_start is not None and alert.window_start is not None
    assert drift_alerts[0].window_start > alert.window_start

    # Both events were published under the one alert id; the table keeps one row per alert
    # (a background merge may already have folded the opening into the resolution).
    def both_states(found: list[Alert]) -> bool:
        return {a.state for a in found if a.alert_id == alert.alert_id} == {"open", "resolved"}

    published = alerts_on_topic(bootstrap, run_id, both_states)
    assert [a.state for a in published if a.alert_id == alert.alert_id] == ["open", "resolved"]
    rows = store.query(
        "SELECT count() AS n FROM alerts FINAL WHERE alert_id = {a:String}", a=alert.alert_id
    )
    assert rows[0]["n"] == 1
