"""Experiments end to end on the real broker (Tansu), the real metrics worker and the real
ClickHouse engine (chDB behind our HTTP interface):

- feedback: the SDK's `feedback(...)` -> llm.feedback -> the worker -> `feedback`, joined to
  the response's variant by `feedback_by_variant`; bad feedback is dead-lettered with a reason;
- history: signed experiment states are stored in `experiment_events`, a forged one is a dead
  letter;
- guardrail: a planted harmful variant (half its answers refusals) is stopped by the worker's
  controller: a signed state with the variant stopped on llm.experiments, a critical Alert on
  llm.alerts, and the decision with its evidence in `experiment_decisions`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.config import Settings
from llmops.experiments.events import VariantSpec, start
from llmops.experiments.publish import publish_with_settings
from llmops.kafka.topics import ensure_topics
from llmops.sdk import LLMOpsClient
from schemas import Alert, Experiment, InferenceResult, Timings, Usage
from schemas.topics import ALERTS, CORE_TOPICS, EXPERIMENTS, FEEDBACK, RESPONSES
from streams.worker import WorkerOptions, topics_needed
from tests.integration.streams.test_worker import Worker, send_all, wait_for

pytestmark = pytest.mark.integration

WAIT_S = 120.0  # a deadline against a hung test, never a measurement
NORMAL = "The capital of France is Paris, on the Seine."
REFUSAL = "I'm sorry, but I can't help with that."


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = connect(url)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        return list(self.client.query(sql, parameters=params).named_results())


@pytest.fixture(scope="module")
def platform(
    bootstrap: str, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, Worker]]:
    ensure_topics(bootstrap, [*CORE_TOPICS, *topics_needed(WorkerOptions())])
    url = f"{store_url}/exp_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    client.close()
    data_dir: Path = tmp_path_factory.mktemp("experiments-worker")
    worker = Worker(bootstrap, url, data_dir, f"streams-exp-{uuid.uuid4().hex[:6]}")
    store = Store(url)
    try:
        wait_for(worker.ready, "the worker to start", worker, WAIT_S)
        yield store, worker
    finally:
        store.client.close()
        assert worker.stop() == 0, worker.log()[-3000:]
        assert "Traceback" not in worker.log(), worker.log()[-5000:]


@pytest.fixture
def producer(bootstrap: str) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    yield producer
    producer.close()


def response(rid: str, experiment: str, variant: str, version: int, text: str) -> InferenceResult:
    return InferenceResult(
        request_id=rid,
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=10, output_tokens=12),
        timings=Timings(ttft_ms=10.0, total_ms=100.0),
        pool="cpu",
        model="tiny",
        prompt_name=f"{experiment}-prompt",
        prompt_version=version,
        experiment=experiment,
        variant=variant,
        cost_usd=0.0001,
    )


def poll_until(check: Callable[[], list[Any]], what: str, worker: Worker) -> list[Any]:
    found: list[Any] = []

    def done() -> bool:
        nonlocal found
        found = check()
        return bool(found)

    wait_for(done, what, worker, WAIT_S)
    return found


def records(bootstrap: str, topic: str, keep: Callable[[Any], bool], worker: Worker) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        enable_auto_commit=False,
    )
    found: list[Any] = []
    try:

        def poll() -> bool:
            for batch in consumer.poll(timeout_ms=250).values():
                found.extend(r for r in batch if keep(r))
            return bool(found)

        wait_for(poll, f"a record on {topic}", worker, WAIT_S)
        return found
    finally:
        consumer.close()


def test_feedback_from_the_sdk_is_stored_joined_to_its_variant_and_bad_feedback_is_dead_lettered(
    platform: tuple[Store, Worker], bootstrap: str, producer: KafkaProducer
) -> None:
    store, worker = platform
    name = f"fb-{uuid.uuid4().hex[:8]}"
    results = [response(f"{name}-{i}", name, "new" if i % 2 else "control", 1 + i % 2, NORMAL)
               for i in range(4)]  # fmt: skip
    send_all(producer, RESPONSES.name, [(r.request_id.encode(), r.to_bytes()) for r in results])

    async def give_feedback() -> None:
        settings = Settings(kafka_bootstrap_servers=bootstrap)
        async with LLMOpsClient.from_settings(settings, app="fbtest") as client:
            await client.feedback(f"{name}-0", score=4.5, label="helpful")
            await client.feedback(f"{name}-1", thumbs=False, comment="wrong city")
            await client.feedback(f"{name}-1", thumbs="up")

    asyncio.run(give_feedback())
    bad = [
        b"{not json",
        b'{"request_id": "%s-0", "score": 5000}' % name.encode(),  # beyond +-1000
        b'{"request_id": "%s-0"}' % name.encode(),  # says nothing
        b'{"request_id": "%s-0", "label": "%s"}' % (name.encode(), b"x" * 500),
    ]
    sent = [producer.send(FEEDBACK.name, key=name.encode(), value=value) for value in bad]
    producer.flush()
    where = [(m.partition, m.offset) for m in (f.get(30) for f in sent)]

    def joined_rows() -> list[dict[str, Any]]:
        found = store.rows(
            "SELECT request_id, variant, experiment, score, thumbs, label FROM feedback_by_variant "
            "WHERE experiment = {e:String} ORDER BY request_id, thumbs",
            e=name,
        )
        return found if len(found) >= 3 else []

    joined = poll_until(joined_rows, "three feedback rows joined to their variants", worker)
    assert [
        (r["request_id"], r["variant"], r["score"], r["thumbs"], r["label"]) for r in joined
    ] == [
        (f"{name}-0", "control", 4.5, 0, "helpful"),
        (f"{name}-1", "new", None, -1, ""),
        (f"{name}-1", "new", None, 1, ""),
    ]
    comment = store.rows("SELECT comment FROM feedback WHERE user_id = '' AND thumbs = -1 "
                         "AND request_id = {r:String}", r=f"{name}-1")  # fmt: skip
    assert comment[0]["comment"] == "wrong city"

    def letters() -> list[dict[str, Any]]:
        found = store.rows(
            "SELECT source_partition, source_offset, kind, reason, service FROM dead_letters "
            "WHERE source_topic = {t:String}",
            t=FEEDBACK.name,
        )
        mine = [r for r in found if (r["source_partition"], r["source_offset"]) in where]
        return mine if len(mine) == len(bad) else []

    dead = poll_until(letters, "the bad feedback's dead letters", worker)
    assert {r["service"] for r in dead} == {"streams"}
    assert all(r["reason"].strip() for r in dead)
    assert sorted(r["kind"] for r in dead) == ["not_json", *["schema_invalid"] * 3], dead


def test_a_guardrail_stops_a_planted_harmful_variant(
    platform: tuple[Store, Worker], bootstrap: str, producer: KafkaProducer
) -> None:
    store, worker = platform
    name = f"guard-{uuid.uuid4().hex[:8]}"
    began = datetime.now(UTC) - timedelta(seconds=5)
    prompt = f"{name}-prompt"
    experiment = start(
        name,
        prompt,
        [VariantSpec("control", prompt, 1, 50), VariantSpec("new", prompt, 2, 50)],
        began,
        guardrails=["refusal_rate", "error_rate"],
    )  # fmt: skip
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    asyncio.run(publish_with_settings(settings, experiment))
    # A forged state (unsigned) stopping the control's rival is a dead letter, never history.
    forged = experiment.model_copy(update={"revision": 99, "status": "stopped"})
    producer.send(EXPERIMENTS.name, key=name.encode(), value=forged.to_bytes(),
                  headers=[("llmops-event", b"Experiment")])  # fmt: skip
    # 300 responses per arm: the control refuses 3%, the new variant half the time.
    results = [
        response(f"{name}-c{i}", name, "control", 1, REFUSAL if i % 33 == 0 else NORMAL)
        for i in range(300)
    ] + [response(f"{name}-n{i}", name, "new", 2, REFUSAL if i % 2 else NORMAL) for i in range(300)]
    send_all(producer, RESPONSES.name, [(r.request_id.encode(), r.to_bytes()) for r in results])

    def stopped_state(record: Any) -> bool:
        if record.key != name.encode():
            return False
        state = Experiment.from_bytes(record.value)
        return state.revision == 2 and state.variant("new").stopped

    [published] = records(bootstrap, EXPERIMENTS.name, stopped_state, worker)[:1]
    state = Experiment.from_bytes(published.value)
    assert state.status == "running" and state.shares() == {"control": 1.0, "new": 0.0}
    assert "llmops-signature" in dict(published.headers)
    assert "refusal_rate" in state.reason

    def guardrail_alert(record: Any) -> bool:
        if name.encode() not in (record.value or b""):
            return False
        return Alert.from_bytes(record.value).kind == "experiment"

    alerts = records(bootstrap, ALERTS.name, guardrail_alert, worker)
    alert = Alert.from_bytes(alerts[0].value)
    assert (alert.severity, alert.kind, alert.rule, alert.variant) == (
        "critical", "experiment", "guardrail_refusal_rate", "new",
    )  # fmt: skip
    assert float(alert.evidence["rate"]) == 0.5

    decisions = poll_until(
        lambda: store.rows(
            "SELECT * FROM experiment_decisions FINAL WHERE experiment = {e:String}", e=name
        ),
        "the decision row",
        worker,
    )
    assert len(decisions) == 1
    decision = decisions[0]
    assert (decision["variant"], decision["metric"], decision["action"]) == (
        "new", "refusal_rate", "stop_variant",
    )  # fmt: skip
    assert decision["treatment_n"] == 300 and decision["treatment_hits"] == 150
    assert decision["p_value"] < decision["alpha"] and decision["cs_low"] > 0

    # The history holds the start and the stop, never the forged state.
    def history_rows() -> list[dict[str, Any]]:
        found = store.rows(
            "SELECT revision, status, stopped FROM experiment_events FINAL "
            "WHERE name = {e:String} ORDER BY revision",
            e=name,
        )
        return found if len(found) >= 2 else []

    history = poll_until(history_rows, "the experiment's history", worker)
    assert [(r["revision"], r["status"], r["stopped"]) for r in history] == [
        (1, "running", []),
        (2, "running", ["new"]),
    ]
    letters = store.rows(
        "SELECT kind FROM dead_letters WHERE source_topic = {t:String}", t=EXPERIMENTS.name
    )
    assert "unsigned" in {r["kind"] for r in letters}


def test_the_controller_applies_a_due_ramp_step(
    platform: tuple[Store, Worker], bootstrap: str
) -> None:
    _, worker = platform
    name = f"ramp-{uuid.uuid4().hex[:8]}"
    prompt = f"{name}-prompt"
    experiment = start(
        name,
        prompt,
        [VariantSpec("control", prompt, 1, 50), VariantSpec("new", prompt, 2, 50)],
        datetime.now(UTC),
        ramp=[10],
        ramp_every_s=1.0,
    )
    assert experiment.shares() == {"control": 0.9, "new": 0.1}
    asyncio.run(publish_with_settings(Settings(kafka_bootstrap_servers=bootstrap), experiment))

    def ramped(record: Any) -> bool:
        return record.key == name.encode() and Experiment.from_bytes(record.value).revision == 2

    [step] = records(bootstrap, EXPERIMENTS.name, ramped, worker)[:1]
    state = Experiment.from_bytes(step.value)
    assert state.shares() == {"control": 0.5, "new": 0.5} and state.ramp_applied == 2
    assert "ramp step 2 of 2" in state.reason

    # The users the new variant had keep it: only control's slots moved.
    def owned(e: Experiment) -> set[int]:
        return {s for r in e.variant("new").slots for s in range(r.start, r.end)}

    assert owned(experiment) < owned(state)
