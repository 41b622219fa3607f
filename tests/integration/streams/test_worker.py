"""The metrics worker (`python -m streams`) against the real broker (Tansu) and the real
ClickHouse engine (chDB behind the store's HTTP interface).

The session's broker is shared, so other tests' records may pass through the same topics:
every assertion selects this test's records by their unique ids and prompt name.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.kafka.topics import ensure_topics
from llmops.local.broker import start_broker
from llmops.local.procs import free_port
from schemas import (
    ChatMessage,
    DeadLetter,
    ErrorInfo,
    InferenceResult,
    MetricWindow,
    PromptRequest,
    Timings,
    Usage,
)
from schemas.topics import DLQ, REQUESTS, RESPONSES
from streams.worker import WorkerOptions, topics_needed
from tests.integration.platform import running_platform
from tests.signing_kit import signed_headers

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WAIT_S = 90.0


# --- helpers -------------------------------------------------------------------------------


def wait_for(
    check: Callable[[], bool], what: str, worker: Worker | None = None, timeout: float = WAIT_S
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError(f"the worker exited while waiting for {what}:\n{worker.log()}")
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class Worker:
    """`python -m streams` as a child process with its own log."""

    def __init__(
        self,
        bootstrap: str,
        url: str,
        data_dir: Path,
        app_id: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = data_dir / f"{app_id}-{uuid.uuid4().hex[:6]}.log"
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLICKHOUSE_URL": url,
            "LLMOPS_DATA_DIR": str(data_dir),
            "LLMOPS_METRICS_WINDOW_S": "1",
            "LLMOPS_SINK_FLUSH_S": "0.2",
            "LLMOPS_STREAMS_APP_ID": app_id,
            "OTEL_TRACES_EXPORTER": "none",
            **(env or {}),
        }
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        return "[^Worker]: Ready" in self.log()

    def stop(self) -> int:
        """SIGTERM, as a supervisor would; the worker must exit cleanly on its own."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"worker ignored SIGTERM:\n{self.log()[-3000:]}") from None
        return self.proc.returncode


@pytest.fixture
def producer(bootstrap: str) -> Iterator[KafkaProducer]:
    # Topics first, at their final size: a producer asking for a missing topic makes the
    # broker auto-create it with its default partition count (Tansu cannot grow it later).
    ensure_topics(bootstrap, topics_needed(WorkerOptions()))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    yield producer
    producer.close()


@pytest.fixture
def run_id() -> str:
    return "st" + uuid.uuid4().hex[:10]


class Tables:
    def __init__(self, url: str) -> None:
        self.client = connect(url)

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.client.query(sql, parameters=params).result_rows[0][0]

    def count(self, table: str, run_id: str) -> int:
        return int(
            self.scalar(
                f"SELECT count() FROM {table} FINAL WHERE startsWith(request_id, {{p:String}})",
                p=run_id,
            )
        )

    def window_sum(self, prompt_name: str) -> int:
        return int(
            self.scalar(
                "SELECT sum(requests) FROM metric_windows FINAL WHERE prompt_name = {p:String}",
                p=prompt_name,
            )
        )

    def windows(self, prompt_name: str) -> list[tuple[Any, ...]]:
        return [
            tuple(row)
            for row in self.client.query(
                "SELECT window_start, variant, requests, errors, finish_reasons "
                "FROM metric_windows FINAL WHERE prompt_name = {p:String} "
                "ORDER BY window_start, variant",
                parameters={"p": prompt_name},
            ).result_rows
        ]


@pytest.fixture
def tables(database: str) -> Iterator[Tables]:
    tables = Tables(database)
    yield tables
    tables.client.close()


def make_result(run_id: str, i: int, ts: datetime) -> InferenceResult:
    failed = i % 10 == 9
    return InferenceResult(
        request_id=f"{run_id}-{i}",
        ts=ts,
        text="" if failed else "word " * (i % 7),
        finish_reason="error" if failed else ("length" if i % 5 == 0 else "stop"),
        error=ErrorInfo(kind="engine_error", message="boom") if failed else None,
        usage=Usage(input_tokens=10, output_tokens=0 if failed else 1 + i % 4),
        timings=Timings(queue_ms=1.0, ttft_ms=5.0 + i, total_ms=50.0 + i),
        pool="cpu",
        model="tiny",
        prompt_name=run_id,
        prompt_version=1,
        variant="a" if i % 2 else "b",
        cost_usd=0.001,
    )


def send_all(
    producer: KafkaProducer, topic: str, records: Sequence[tuple[bytes | None, bytes]]
) -> None:
    for key, value in records:
        headers = [("traceparent", TRACEPARENT)]
        if topic == RESPONSES.name:  # results count only when signed by our services
            headers = signed_headers(topic, key, value, "InferenceResult", headers)
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()


def send_sentinels(producer: KafkaProducer, run_id: str, tag: str) -> list[str]:
    """One result per llm.responses partition, sent last: once all are stored, every record
    sent before them has been through the worker (partitions are consumed in order)."""
    ids = []
    for partition in range(RESPONSES.partitions):
        result = InferenceResult(
            request_id=f"{run_id}{tag}-{partition}",
            finish_reason="stop",
            prompt_name=f"{run_id}{tag}",
        )
        value = result.to_bytes()
        headers = signed_headers(RESPONSES.name, None, value, "InferenceResult")
        producer.send(RESPONSES.name, value=value, partition=partition, headers=headers)
        ids.append(result.request_id)
    producer.flush()
    return ids


def read_topic(
    bootstrap: str,
    topic: str,
    keep: Callable[[bytes], bool],
    want: int,
    timeout: float = WAIT_S,
    linger: float = 0.0,
) -> list[bytes]:
    """Records of `topic` (from the start) that `keep` selects, until `want` are found; then
    `linger` seconds more on the same (joined, caught-up) consumer, for any that should not
    be there."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        enable_auto_commit=False,
    )
    found: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(found) < want:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend(r.value for r in records if r.value is not None and keep(r.value))
        deadline = time.monotonic() + linger
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend(r.value for r in records if r.value is not None and keep(r.value))
        return found
    finally:
        consumer.close()


# --- tests ---------------------------------------------------------------------------------


def test_requests_responses_windows_and_dead_letters(
    bootstrap: str,
    database: str,
    tables: Tables,
    producer: KafkaProducer,
    run_id: str,
    tmp_path: Path,
) -> None:
    n = 60
    # Raw text at rest: this test finds its stored dead letters by their original bytes, which
    # the default (redacted) drops. Redaction has its own test below.
    env = {"LLMOPS_STORE_TEXT": "raw"}
    worker = Worker(bootstrap, database, tmp_path, f"streams-{run_id}", env)
    try:
        requests = [
            PromptRequest(
                request_id=f"{run_id}-{i}",
                user_id=f"u{i % 7}",
                messages=[ChatMessage(role="user", content=f"question {i}")],
            )
            for i in range(n)
        ]
        # Invalid, and before a good request on the same partition: once that one is stored,
        # the worker has been past this one (skipped: the router owns llm.requests' dead letters).
        schema_invalid = f'{{"request_id": "{run_id}-bad", "messages": []}}'.encode()
        send_all(producer, "llm.requests", [(requests[-1].sticky_key.encode(), schema_invalid)])
        send_all(
            producer, "llm.requests", [(r.sticky_key.encode(), r.to_bytes()) for r in requests]
        )
        now = datetime.now(UTC)
        results = [make_result(run_id, i, now + timedelta(milliseconds=20 * i)) for i in range(n)]
        payloads = [(r.request_id.encode(), r.to_bytes()) for r in results]
        send_all(producer, "llm.responses", payloads)
        not_json = f"{run_id} \xff not json".encode("latin-1")
        send_all(producer, "llm.responses", [(None, not_json)])

        wait_for(lambda: tables.count("requests", run_id) == n, "the requests rows", worker)
        wait_for(lambda: tables.count("responses", run_id) == n, "the responses rows", worker)
        wait_for(lambda: tables.window_sum(run_id) == n, "windows summing to N", worker)

        windows = tables.windows(run_id)
        assert {variant for _, variant, *_ in windows} == {"a", "b"}
        assert sum(errors for *_, errors, _ in windows) == n // 10
        reasons: dict[str, int] = {}
        for *_, finish_reasons in windows:
            for reason, count in finish_reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
        assert reasons == {
            "error": n // 10,
            "length": sum(1 for i in range(n) if i % 10 != 9 and i % 5 == 0),
            "stop": sum(1 for i in range(n) if i % 10 != 9 and i % 5 != 0),
        }

        # Bad input went to llm.dlq (and from there to dead_letters), kept whole.
        def ours(value: bytes) -> bool:
            try:
                letter = DeadLetter.from_bytes(value)
            except ValueError:
                return False
            return run_id.encode() in base64.b64decode(letter.payload_b64)

        letters = [DeadLetter.from_bytes(v) for v in read_topic(bootstrap, "llm.dlq", ours, 1)]
        assert [(x.source_topic, x.kind, x.service) for x in letters] == [
            ("llm.responses", "not_json", "streams")
        ]
        assert base64.b64decode(letters[0].payload_b64) == not_json
        stored_letters = (
            "SELECT count() FROM dead_letters FINAL WHERE payload_b64 IN {p:Array(String)}"
        )
        ours_b64 = [base64.b64encode(x).decode() for x in (not_json, schema_invalid)]
        wait_for(
            lambda: tables.scalar(stored_letters, p=ours_b64) == 1, "dead_letters rows", worker
        )

        # Each closed window was published on llm.metrics too (besides its QualityWindows).
        def metric_window(value: bytes) -> bool:
            if f'"prompt_name":"{run_id}"'.encode() not in value:
                return False
            try:
                MetricWindow.from_bytes(value)
            except ValueError:
                return False
            return True

        published = [
            MetricWindow.from_bytes(v)
            for v in read_topic(bootstrap, "llm.metrics", metric_window, want=len(windows))
        ]
        latest: dict[tuple[datetime, str], int] = {}
        for window in published:
            key = (window.window_start, window.variant)
            latest[key] = max(latest.get(key, 0), window.requests)
        assert sum(latest.values()) == n

        # The same N results again: nothing changes.
        send_all(producer, "llm.responses", payloads)
        sentinels = send_sentinels(producer, run_id, "x")
        wait_for(
            lambda: tables.count("responses", f"{run_id}x-") == len(sentinels),
            "the sentinels",
            worker,
        )
        wait_for(
            lambda: tables.window_sum(f"{run_id}x") == len(sentinels), "sentinel windows", worker
        )
        assert tables.count("responses", f"{run_id}-") == n
        assert tables.window_sum(run_id) == n
        assert tables.windows(run_id) == windows
    finally:
        code = worker.stop()
    assert code == 0, worker.log()[-3000:]
    assert "Traceback" not in worker.log()


def test_a_window_split_by_a_restart_is_stored_whole(
    bootstrap: str,
    database: str,
    tables: Tables,
    producer: KafkaProducer,
    run_id: str,
    tmp_path: Path,
) -> None:
    """Half a window's responses, a restart, then the other half (late, the window closed
    long ago): the restarted worker completes the window from `responses` before emitting,
    so the stored row counts both halves instead of being replaced by the second."""
    app_id = f"streams-{run_id}"
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    results = [make_result(run_id, i, long_ago + timedelta(milliseconds=10 * i)) for i in range(40)]
    first, second = results[:25], results[25:]

    worker = Worker(bootstrap, database, tmp_path, app_id)
    try:
        send_all(producer, "llm.responses", [(r.request_id.encode(), r.to_bytes()) for r in first])
        wait_for(
            lambda: tables.window_sum(run_id) == len(first), "the first half's windows", worker
        )
    finally:
        assert worker.stop() == 0

    send_all(producer, "llm.responses", [(r.request_id.encode(), r.to_bytes()) for r in second])
    worker = Worker(
        bootstrap, database, tmp_path, app_id
    )  # same group: resumes after the first half
    try:
        wait_for(lambda: tables.count("responses", run_id) == len(results), "all responses", worker)
        wait_for(lambda: tables.window_sum(run_id) == len(results), "the whole window", worker)
        assert "seeded" in worker.log()
        assert len(tables.windows(run_id)) == 2  # one window, two variants
    finally:
        assert worker.stop() == 0


def test_inserts_that_fail_are_retried_and_nothing_is_lost(
    bootstrap: str,
    store_url: str,
    producer: KafkaProducer,
    run_id: str,
    tmp_path: Path,
) -> None:
    """The worker starts before its tables exist: every insert fails, nothing is acked;
    once the migrations run, everything arrives."""
    url = f"{store_url}/t_{uuid.uuid4().hex[:12]}"
    ensure_database(url).close()
    worker = Worker(bootstrap, url, tmp_path, f"streams-{run_id}")
    try:
        now = datetime.now(UTC)
        results = [make_result(run_id, i, now) for i in range(20)]
        send_all(
            producer, "llm.responses", [(r.request_id.encode(), r.to_bytes()) for r in results]
        )
        wait_for(lambda: "rows into responses failed" in worker.log(), "a failed insert", worker)
        client = connect(url)
        try:
            apply_migrations(client)
        finally:
            client.close()
        tables = Tables(url)
        try:
            wait_for(lambda: tables.count("responses", run_id) == 20, "the responses rows", worker)
            wait_for(lambda: tables.window_sum(run_id) == 20, "the windows", worker)
        finally:
            tables.client.close()
    finally:
        assert worker.stop() == 0


def test_a_bad_dead_letter_is_skipped_without_a_loop(
    database: str, tables: Tables, run_id: str, tmp_path: Path
) -> None:
    """On a broker of its own: the session's llm.dlq must hold only valid dead letters
    for the other tests that read it."""
    port = free_port()
    broker = start_broker("127.0.0.1", port, tmp_path / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    try:
        ensure_topics(bootstrap, topics_needed(WorkerOptions()))
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        worker = Worker(bootstrap, database, tmp_path, f"streams-{run_id}")
        try:
            bad = f"{run_id} is not a dead letter".encode()
            good = DeadLetter(
                kind="unroutable",
                reason="no pool serves model x",
                service="router",
                source_topic="llm.requests",
                source_partition=1,
                source_offset=9,
                payload_b64=base64.b64encode(run_id.encode()).decode(),
                payload_size=len(run_id),
                request_id=f"{run_id}-1",
            )
            # Same key, same partition: the good one is read after the bad one.
            send_all(producer, "llm.dlq", [(b"k", bad), (b"k", good.to_bytes())])
            wait_for(
                lambda: tables.count("dead_letters", run_id) == 1, "the valid dead letter", worker
            )
            assert "(skipped, not dead-lettered) as not_json" in worker.log()
            assert tables.scalar("SELECT count() FROM dead_letters FINAL") == 1
            # Nothing about the bad one went back to llm.dlq.
            # Both found (however long the consumer takes to join), then 3 s more for a third.
            found = read_topic(bootstrap, "llm.dlq", lambda v: True, want=2, linger=3)
            assert found == [bad, good.to_bytes()]
        finally:
            assert worker.stop() == 0
            producer.close()
    finally:
        broker.terminate()
        broker.wait(10)


def test_two_workers_share_the_windows_without_splitting_any(
    bootstrap: str,
    database: str,
    tables: Tables,
    producer: KafkaProducer,
    run_id: str,
    tmp_path: Path,
) -> None:
    """Each window group is aggregated by one worker (the owner of its features partition):
    with two workers in the group, every stored window still counts all its responses.
    Were a group split between them, each would store its part and the later insert would
    replace the other's: the sums would fall short."""
    app_id = f"streams-{run_id}"
    workers = [Worker(bootstrap, database, tmp_path, app_id) for _ in range(2)]
    try:
        for worker in workers:
            wait_for(worker.ready, "the worker to start", worker)
        now = datetime.now(UTC)
        results = []
        for i in range(120):
            result = make_result(run_id, i, now + timedelta(milliseconds=10 * i))
            results.append(result.model_copy(update={"variant": f"v{i % 6}"}))
        send_all(
            producer, "llm.responses", [(r.request_id.encode(), r.to_bytes()) for r in results]
        )
        wait_for(lambda: tables.count("responses", run_id) == len(results), "all responses")
        wait_for(lambda: tables.window_sum(run_id) == len(results), "complete windows")
        per_variant: dict[str, int] = {}
        for _, variant, requests, *_ in tables.windows(run_id):
            per_variant[variant] = per_variant.get(variant, 0) + requests
        assert per_variant == {f"v{k}": 20 for k in range(6)}
        # The quality windows too: one owner per group's window, so no part replaces another.
        quality_sql = (
            "SELECT sum(responses) FROM quality_windows FINAL "
            "WHERE prompt_name = {p:String} AND segment = ''"
        )
        wait_for(lambda: tables.scalar(quality_sql, p=run_id) == len(results), "complete quality")
        by_variant = tables.scalar(
            "SELECT groupArray((variant, n)) FROM (SELECT variant, sum(responses) AS n "
            "FROM quality_windows FINAL WHERE prompt_name = {p:String} AND segment = '' "
            "GROUP BY variant ORDER BY variant)",
            p=run_id,
        )
        assert [tuple(pair) for pair in by_variant] == [(f"v{k}", 20) for k in range(6)]
        assert all(w.proc.poll() is None for w in workers)
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0]


# --- records the store cannot hold ---------------------------------------------------------


def committed(bootstrap: str, group: str, topic: str, partition: int) -> int:
    """The group's committed offset (the next record it will read) of one partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition)) or 0
    finally:
        consumer.close()


@pytest.fixture
def own_bootstrap(tmp_path: Path) -> Iterator[str]:
    """A broker of the test's own: its llm.dlq gets records other tests must not read."""
    port = free_port()
    broker = start_broker("127.0.0.1", port, tmp_path / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    try:
        ensure_topics(bootstrap, topics_needed(WorkerOptions()))
        yield bootstrap
    finally:
        broker.terminate()
        broker.wait(10)


def dead_letter(run_id: str, i: int, **update: Any) -> DeadLetter:
    letter = DeadLetter(
        kind="unroutable",
        reason="no pool serves model x",
        service="router",
        source_topic="llm.requests",
        source_partition=0,
        source_offset=1000 + i,
        payload_b64=base64.b64encode(f"{run_id} request {i}".encode()).decode(),
        payload_size=20,
        request_id=f"{run_id}-dl{i}",
    )
    return letter.model_copy(update=update)


def send_result(producer: KafkaProducer, value: bytes) -> None:
    """To partition 0, so records are consumed in the order sent; signed as our services do
    (a poisoned result that comes from a real pool, not a forgery)."""
    headers = signed_headers(RESPONSES.name, None, value, "InferenceResult")
    producer.send(RESPONSES.name, value=value, partition=0, headers=headers)


def with_json_field(payload: bytes, path: Sequence[str], value: Any) -> bytes:
    """The record with one field set to a value its contract may not allow."""
    doc = json.loads(payload)
    node = doc
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    return json.dumps(doc).encode()


def test_records_the_store_cannot_hold_are_dead_lettered_and_the_stream_moves_on(
    own_bootstrap: str, database: str, tables: Tables, run_id: str, tmp_path: Path
) -> None:
    """Between good records: results and dead letters the store refuses (a value past 64 bits;
    values the contract allows but this deployment's narrower columns cannot hold). The good
    ones are stored, each bad response becomes a dead letter with the store's reason and the
    original record, a bad dead letter is counted and skipped, offsets are committed past
    all of them and a record sent afterwards is stored too. Before: every insert of the
    batch failed, was retried forever, and nothing after it was stored again."""
    bootstrap, app_id = own_bootstrap, f"streams-{run_id}"
    tables.client.command("ALTER TABLE responses MODIFY COLUMN cost_usd Decimal(9, 6)")
    tables.client.command("ALTER TABLE dead_letters MODIFY COLUMN reply_to FixedString(16)")
    now = datetime.now(UTC)
    good = [make_result(run_id, i, now) for i in range(5)]
    costly = good[1].model_copy(update={"cost_usd": 5000.0}).to_bytes()  # valid; not here
    huge = with_json_field(good[2].to_bytes(), ("usage", "input_tokens"), 2**70)
    responses = [good[0].to_bytes(), costly, huge, good[3].to_bytes()]
    letters = [
        dead_letter(run_id, 0).to_bytes(),
        dead_letter(run_id, 1, reply_to="replies.a-topic-named-past-16").to_bytes(),
        with_json_field(dead_letter(run_id, 2).to_bytes(), ("source_offset",), 2**70),
        dead_letter(run_id, 3).to_bytes(),
    ]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    worker = Worker(bootstrap, database, tmp_path, app_id)
    try:
        for value in responses:
            send_result(producer, value)
        for value in letters:
            producer.send(DLQ.name, value=value, partition=0)
        producer.flush()

        stored = "SELECT request_id FROM responses FINAL WHERE startsWith(request_id, {p:String})"
        wait_for(lambda: tables.count("responses", run_id) == 2, "the good responses", worker)
        ids = {row[0] for row in tables.client.query(stored, parameters={"p": run_id}).result_rows}
        assert ids == {good[0].request_id, good[3].request_id}

        def from_streams(value: bytes) -> bool:
            try:
                letter = DeadLetter.from_bytes(value)
            except ValueError:  # the bad dead letter this test sent
                return False
            return letter.service == "streams" and letter.source_topic == RESPONSES.name

        found = read_topic(bootstrap, DLQ.name, from_streams, want=2)
        by_offset = {x.source_offset: x for x in map(DeadLetter.from_bytes, found)}
        assert sorted(by_offset) == [1, 2]
        assert by_offset[1].kind == "unstorable"
        assert "Decimal" in by_offset[1].reason  # the store's own words
        # Past 64 bits: refused by the contract where it bounds the field, else by the sink.
        assert by_offset[2].kind in {"unstorable", "schema_invalid"}
        assert [base64.b64decode(by_offset[o].payload_b64) for o in (1, 2)] == [costly, huge]
        assert {by_offset[o].source_partition for o in (1, 2)} == {0}

        # The good dead letters and the worker's two are stored; the two bad ones are not.
        wait_for(
            lambda: tables.scalar("SELECT count() FROM dead_letters FINAL") == 4,
            "the storable dead letters",
            worker,
        )
        kept = tables.client.query(
            "SELECT source_topic, source_offset FROM dead_letters FINAL ORDER BY source_offset"
        ).result_rows
        assert [tuple(row) for row in kept] == [
            ("llm.responses", 1),
            ("llm.responses", 2),
            ("llm.requests", 1000),
            ("llm.requests", 1003),
        ]
        # Windows count only the stored responses (a bad one's features are withheld).
        wait_for(lambda: tables.window_sum(run_id) == 2, "the good responses' windows", worker)

        # Committed past every record, bad ones included.
        wait_for(
            lambda: committed(bootstrap, app_id, RESPONSES.name, 0) >= len(responses),
            "llm.responses committed past the bad results",
            worker,
        )
        wait_for(
            lambda: committed(bootstrap, app_id, DLQ.name, 0) >= len(letters),
            "llm.dlq committed past the bad dead letters",
            worker,
        )
        # And it keeps going.
        send_result(producer, good[4].to_bytes())
        producer.flush()
        wait_for(lambda: tables.count("responses", run_id) == 3, "a later response", worker)
        assert "unstorable" in worker.log()
    finally:
        code = worker.stop()
        producer.close()
    assert code == 0, worker.log()[-3000:]
    assert "Traceback" not in worker.log()


def store_response_and_letter(
    bootstrap: str,
    tables: Tables,
    worker: Worker,
    run_id: str,
    result: InferenceResult,
    letter: DeadLetter,
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Send one result and one dead letter of run `run_id` through `worker`; what the store
    kept: (text, output_chars) of the response, (payload_b64, key_b64, headers) of the letter."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        send_result(producer, result.to_bytes())
        producer.send(DLQ.name, key=b"k", value=letter.to_bytes())
        producer.flush()
    finally:
        producer.close()
    wait_for(lambda: tables.count("responses", run_id) == 1, "the response", worker)
    wait_for(lambda: tables.count("dead_letters", run_id) == 1, "the dead letter", worker)
    response = tables.client.query(
        "SELECT text, output_chars FROM responses FINAL WHERE request_id = {r:String}",
        parameters={"r": result.request_id},
    ).result_rows[0]
    stored_letter = tables.client.query(
        "SELECT payload_b64, key_b64, headers FROM dead_letters FINAL"
    ).result_rows[0]
    return tuple(response), tuple(stored_letter)


def test_a_worker_that_stores_no_text_and_keeps_rows_n_days(
    own_bootstrap: str, database: str, tables: Tables, run_id: str, tmp_path: Path
) -> None:
    """LLMOPS_STORE_TEXT=none: the stored response has no text and the stored dead letter no
    payload, key or header values (the topic keeps them). LLMOPS_RETENTION_DAYS=7: the text
    tables' TTL is set at start, over the migration's default of 30 days, counted from when a
    row was stored: a response dated long ago is stored all the same."""
    bootstrap = own_bootstrap
    for table in ("requests", "responses", "dead_letters", "judgements"):
        assert "TTL inserted_at + toIntervalDay(30)" in tables.scalar(f"SHOW CREATE TABLE {table}")
    env = {"LLMOPS_STORE_TEXT": "none", "LLMOPS_RETENTION_DAYS": "7"}
    worker = Worker(bootstrap, database, tmp_path, f"streams-{run_id}", env)
    try:
        result = make_result(run_id, 1, datetime(2001, 1, 1, tzinfo=UTC))
        letter = dead_letter(run_id, 0, key_b64=base64.b64encode(b"user-7").decode())
        letter = letter.model_copy(update={"headers": {"x-user": "ada@example.com"}})
        response, stored = store_response_and_letter(
            bootstrap, tables, worker, run_id, result, letter
        )
        assert response == ("", len(result.text))
        assert len(result.text) > 0
        assert stored == ("", "", {"x-user": ""})

        def ttl_set() -> bool:
            return all(
                "TTL inserted_at + toIntervalDay(7)" in tables.scalar(f"SHOW CREATE TABLE {table}")
                for table in ("requests", "responses", "dead_letters", "judgements")
            )

        wait_for(ttl_set, "the retention TTL of 7 days", worker)
        assert "TTL" not in tables.scalar("SHOW CREATE TABLE metric_windows")
    finally:
        code = worker.stop()
    assert code == 0, worker.log()[-3000:]


def test_by_default_stored_text_carries_placeholders_not_the_planted_personal_data(
    own_bootstrap: str, database: str, tables: Tables, run_id: str, tmp_path: Path
) -> None:
    """No setting: a response that leaks an email and a card number is stored with typed
    placeholders; a dead letter keeps its header names, with values redacted, and no bytes."""
    bootstrap = own_bootstrap
    worker = Worker(bootstrap, database, tmp_path, f"streams-{run_id}")
    try:
        leak = "Write to ada@example.com, card 4111 1111 1111 1111."
        result = make_result(run_id, 1, datetime.now(UTC)).model_copy(update={"text": leak})
        letter = dead_letter(run_id, 0, key_b64=base64.b64encode(b"ada@example.com").decode())
        letter = letter.model_copy(update={"headers": {"x-user": "ada@example.com"}})
        response, stored = store_response_and_letter(
            bootstrap, tables, worker, run_id, result, letter
        )
        assert response == ("Write to <EMAIL>, card <CREDIT_CARD>.", len(leak))
        assert stored == ("", "", {"x-user": "<EMAIL>"})
    finally:
        code = worker.stop()
    assert code == 0, worker.log()[-3000:]


def test_a_response_is_stored_with_its_cheap_tier_signals_and_spans_not_the_email(
    own_bootstrap: str, database: str, tables: Tables, run_id: str, tmp_path: Path
) -> None:
    """No setting: the default detectors run on the stored response; its row says it refused
    and leaked an email (which detector, which version, where), and holds no email text."""
    worker = Worker(own_bootstrap, database, tmp_path, f"streams-{run_id}")
    producer = KafkaProducer(bootstrap_servers=own_bootstrap, acks="all")
    email = "ada@example.com"
    text = f"I'm sorry, but I can't help with that. Write to {email}."
    try:
        result = make_result(run_id, 1, datetime.now(UTC)).model_copy(update={"text": text})
        send_result(producer, result.to_bytes())
        producer.flush()
        wait_for(lambda: tables.count("responses", run_id) == 1, "the response", worker)
        [row] = tables.client.query(
            "SELECT signals, signal_detectors, finding_signal, finding_kind, finding_where,"
            " finding_start, finding_end FROM responses FINAL WHERE request_id = {r:String}",
            parameters={"r": result.request_id},
        ).named_results()
        # Every column of every row as text: the email must be nowhere, its placeholder is.
        anywhere = (
            "SELECT count() FROM responses FINAL WHERE request_id = {r:String}"
            " AND position(toString(tuple(*)), {s:String}) > 0"
        )
        stored = [
            tables.client.query(anywhere, parameters={"r": result.request_id, "s": s}).result_rows[
                0
            ][0]
            for s in (email, "<EMAIL>")
        ]
    finally:
        code = worker.stop()
        producer.close()
    assert code == 0, worker.log()[-3000:]
    assert (row["signals"]["refusal"], row["signals"]["pii_output"]) == (1.0, 1.0)
    assert row["signal_detectors"]["refusal"] == "refusal_patterns@1"
    assert row["signal_detectors"]["pii_output"].startswith("pii_regex@")
    start = text.index(email)
    findings = list(
        zip(
            row["finding_signal"],
            row["finding_kind"],
            row["finding_where"],
            row["finding_start"],
            row["finding_end"],
            strict=True,
        )
    )
    assert ("pii_output", "EMAIL", "output", start, start + len(email)) in findings
    assert stored == [0, 1]


async def wait_async(check: Callable[[], bool], what: str, worker: Worker) -> None:
    """wait_for, for tests whose event loop runs services meanwhile."""
    deadline = time.monotonic() + WAIT_S
    while not await asyncio.to_thread(check):
        if worker.proc.poll() is not None:
            raise AssertionError(f"the worker exited while waiting for {what}:\n{worker.log()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


async def test_a_bad_request_is_dead_lettered_once_by_the_router_not_the_worker(
    own_bootstrap: str, database: str, tables: Tables, run_id: str, tmp_path: Path
) -> None:
    """The router and the metrics worker both read llm.requests; only the router dead-letters
    what neither can decode, so the dead-letter topic counts each bad request once."""
    bootstrap, app_id = own_bootstrap, f"streams-{run_id}"
    worker = Worker(bootstrap, database, tmp_path, app_id)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    letters_of_bad = (
        "SELECT service FROM dead_letters FINAL WHERE request_id = {r:String} ORDER BY service"
    )
    try:
        async with running_platform(bootstrap):
            bad = f'{{"request_id": "{run_id}-bad", "messages": []}}'.encode()
            good = PromptRequest(
                request_id=f"{run_id}-good", messages=[ChatMessage(role="user", content="hi")]
            )
            # One partition, the bad one first: once the good one is committed, the worker
            # has been past the bad one (and published anything it made of it).
            for value in (bad, good.to_bytes()):
                producer.send(REQUESTS.name, value=value, partition=0)
            producer.flush()
            await wait_async(
                lambda: committed(bootstrap, app_id, REQUESTS.name, 0) >= 2,
                "the worker past both requests",
                worker,
            )
            await wait_async(
                lambda: tables.count("dead_letters", f"{run_id}-bad") >= 1,
                "the router's dead letter",
                worker,
            )
        # A last dead letter on the same llm.dlq partition (keyed by source topic): once it is
        # stored, every dead letter about llm.requests before it is stored too.
        sentinel = dead_letter(run_id, 9, service="test", request_id=f"{run_id}-sentinel")
        producer.send(DLQ.name, key=REQUESTS.name.encode(), value=sentinel.to_bytes())
        producer.flush()
        await wait_async(
            lambda: tables.count("dead_letters", f"{run_id}-sentinel") == 1, "the sentinel", worker
        )
        rows = tables.client.query(letters_of_bad, parameters={"r": f"{run_id}-bad"}).result_rows
        assert [row[0] for row in rows] == ["router"]
        assert tables.count("requests", run_id) == 1  # the good one; the bad one skipped
    finally:
        code = worker.stop()
        producer.close()
    assert code == 0, worker.log()[-3000:]
