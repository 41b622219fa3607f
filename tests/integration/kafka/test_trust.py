"""Trust boundaries on the real broker (and the real ClickHouse engine): who may steer routing,
whose results are stored, where replies may go.

Anyone who can write to a topic can read a pool's instance id from llm.pools.status and forge
its heartbeat, or write a result for a real request id to llm.responses. Signed records
(llmops/kafka/signing.py) make both dead letters. A request's `reply_to` may name only a reply
topic: never an internal llm.* topic, Kafka's own, or a name that is no topic at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmops.clickhouse.client import connect
from llmops.config import FakePool
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.signing import SigningKeys
from llmops.kafka.topics import ensure_topics, list_topics
from llmops.sdk import LLMOpsClient
from schemas import DeadLetter, InferenceResult, PoolStatus, utc_now
from schemas.topics import DLQ, EVENT_TYPE_HEADER, POOL_STATUS, REQUESTS, RESPONSES
from services.inference.service import PoolLoop
from streams.worker import WorkerOptions, topics_needed
from tests.signing_kit import signed_headers

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
WAIT_S = 60.0
Header = tuple[str, bytes]
WRONG_KEY = SigningKeys("k1", b"not-the-deployment-key-" + b"x" * 16)


async def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def records_of(bootstrap: str, topic: str, timeout_s: float = 5.0) -> list[bytes]:
    """Every record value of `topic`, read from the beginning up to its high watermarks."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            await consumer.topics()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        pending = set(parts)
        while pending and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value or b"" for r in records)
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= high:
                    pending.discard(tp)
        assert not pending, f"{topic} not read to its end within {timeout_s}s"
        return values
    finally:
        await consumer.stop()


async def dead_letters_with(bootstrap: str, marker: str, expected: int) -> list[DeadLetter]:
    """Dead letters whose original payload holds `marker`, once `expected` are there."""
    found: dict[str, DeadLetter] = {}
    deadline = time.monotonic() + WAIT_S
    while len(found) < expected and time.monotonic() < deadline:
        for value in await records_of(bootstrap, DLQ.name):
            try:
                letter = DeadLetter.model_validate_json(value)
            except ValueError:
                continue  # another test's deliberately bad record
            if marker.encode() in base64.b64decode(letter.payload_b64):
                found[letter.event_id] = letter
        if len(found) < expected:
            await asyncio.sleep(0.2)
    return list(found.values())


# --- forged heartbeats ---------------------------------------------------------------------


async def test_forged_heartbeats_do_not_switch_a_pool_off_and_are_dead_lettered(
    bootstrap: str,
) -> None:
    from tests.integration.platform import running_platform

    marker = "forged" + uuid.uuid4().hex[:10]
    pool = FakePool(name=f"trust-{uuid.uuid4().hex[:6]}", model="fake")
    async with (
        running_platform(bootstrap, [pool], heartbeat_interval_s=0.1) as platform,
        LLMOpsClient(bootstrap, app="trust") as client,
        Producer(BusConfig(bootstrap, signer=None)) as unsigned,
        Producer(BusConfig(bootstrap, signer=WRONG_KEY)) as wrong_key,
    ):
        board, router = platform.router.board, platform.router
        await eventually(lambda: board.view(pool.name, utc_now()).state == "up", 30, "pool up")
        pool_loop = next(loop for loop in platform.loops if isinstance(loop, PoolLoop))
        # What an attacker reads off the topic: the live instance; dated ahead, so on a board
        # that took it, no real beat after it could ever win it back.
        forged = PoolStatus(
            pool=pool.name,
            instance=pool_loop.heartbeat.instance,
            region=marker,
            capacity=pool.capacity,
            in_flight=0,
            healthy=False,
            ts=utc_now() + timedelta(hours=1),
        )
        before = router.bad_statuses
        await (await unsigned.send_event(POOL_STATUS.name, forged, key=pool.name, sign=True))
        await (await wrong_key.send_event(POOL_STATUS.name, forged, key=pool.name, sign=True))
        # Read, either way: refused (counted as bad statuses), or taken (the pool turns off).
        await eventually(
            lambda: (
                router.bad_statuses >= before + 2 or board.view(pool.name, utc_now()).state != "up"
            ),
            30,
            "both forgeries read",
        )
        assert board.view(pool.name, utc_now()).state == "up"
        assert router.bad_statuses >= before + 2
        result = await client.generate([{"role": "user", "content": "still there?"}], timeout_s=30)
    assert result.pool == pool.name and result.error is None
    letters = await dead_letters_with(bootstrap, marker, 2)
    assert sorted(letter.kind for letter in letters) == ["bad_signature", "unsigned"]
    assert {(letter.source_topic, letter.service) for letter in letters} == {
        (POOL_STATUS.name, "router-status")
    }


# --- reply_to ------------------------------------------------------------------------------

HOSTILE_REPLY_TO = [
    "llm.pools.status",
    "llm.prompts",
    "llm.experiments",
    "llm.responses",
    "__consumer_offsets",
    "a/b",
    "llm.replies..",
]


async def test_requests_naming_a_non_reply_topic_are_dead_letters_and_get_no_reply(
    bootstrap: str,
) -> None:
    from tests.integration.platform import running_platform

    marker = "hostile" + uuid.uuid4().hex[:10]
    async with (
        running_platform(bootstrap) as platform,
        LLMOpsClient(bootstrap, app="trust") as client,
        Producer(BusConfig(bootstrap)) as producer,
    ):
        sent: list[str] = []
        for i, reply_to in enumerate(HOSTILE_REPLY_TO):
            # Valid but for reply_to; and invalid for another reason too (its reply address
            # would then be sniffed from the payload for the error reply).
            for variant, extra in (("v", {}), ("i", {"sampling": {"max_tokens": -3}})):
                request_id = f"{marker}-{variant}{i}"
                payload = {
                    "request_id": request_id,
                    "messages": [{"role": "user", "content": marker}],
                    "reply_to": reply_to,
                    **extra,
                }
                await (await producer.send(REQUESTS.name, json.dumps(payload).encode()))
                sent.append(request_id)
        # Sent after them on the same loop: served, so nothing before it stalled the router.
        result = await client.generate([{"role": "user", "content": "and me?"}], timeout_s=30)
        assert result.error is None
        letters = await dead_letters_with(bootstrap, marker, len(sent))
        routed = platform.router.routed
    assert sorted(letter.request_id or "" for letter in letters) == sorted(sent)
    assert {letter.kind for letter in letters} == {"schema_invalid"}
    assert all(letter.reply_to is None for letter in letters)
    assert all("reply_to" in letter.reason for letter in letters if "-v" in str(letter.request_id))
    assert routed == 1  # only the good request
    existing = await asyncio.to_thread(list_topics, bootstrap)
    for topic in set(HOSTILE_REPLY_TO) - {RESPONSES.name}:
        if topic in existing:  # no reply, error or result, ever reached it
            assert not [v for v in await records_of(bootstrap, topic) if marker.encode() in v]
    # llm.responses holds each refused request's error result once (the durable record for
    # the metrics), never a second copy sent there as a "reply".
    results = [
        InferenceResult.model_validate_json(v)
        for v in await records_of(bootstrap, RESPONSES.name)
        if marker.encode() in v
    ]
    assert sorted(r.request_id for r in results) == sorted(sent)


# --- forged results ------------------------------------------------------------------------


def start_streams(bootstrap: str, url: str, data_dir: Path, app_id: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,  # the deployment key (tests/conftest.py)
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLICKHOUSE_URL": url,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_SINK_FLUSH_S": "0.2",
        "LLMOPS_STREAMS_APP_ID": app_id,
        "OTEL_TRACES_EXPORTER": "none",
    }
    with open(data_dir / "streams.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams"], cwd=REPO, env=env, stdout=log, stderr=log
        )


async def test_a_forged_result_is_dead_lettered_and_never_replaces_the_real_row(
    bootstrap: str, database: str, tmp_path: Path
) -> None:
    marker = "res" + uuid.uuid4().hex[:10]
    await asyncio.to_thread(ensure_topics, bootstrap, topics_needed(WorkerOptions()))
    real = InferenceResult(request_id=f"{marker}-1", text="the real answer", finish_reason="stop")
    forged = real.model_copy(update={"text": f"forged {marker}", "cost_usd": 999.0})
    last = InferenceResult(request_id=f"{marker}-last", text="after", finish_reason="stop")
    key = real.request_id.encode()
    worker = start_streams(bootstrap, database, tmp_path, f"trust-{marker}")
    try:

        def signed(result: InferenceResult, keys: SigningKeys | None = None) -> list[Header]:
            return signed_headers(
                RESPONSES.name, key, result.to_bytes(), "InferenceResult", keys=keys
            )

        async with Producer(BusConfig(bootstrap, signer=None)) as producer:
            # One key, so one partition: consumed in this order.
            for result, headers in (
                (real, signed(real)),
                (forged, signed(forged, WRONG_KEY)),
                (forged, [(EVENT_TYPE_HEADER, b"InferenceResult")]),  # unsigned
                (last, signed(last)),
            ):
                await (await producer.send(RESPONSES.name, result.to_bytes(), key, headers))
        client = connect(database)
        try:

            def stored() -> dict[str, str]:
                rows = client.query(
                    "SELECT request_id, text FROM responses FINAL "
                    "WHERE startsWith(request_id, {p:String})",
                    parameters={"p": marker},
                ).result_rows
                return {str(r[0]): str(r[1]) for r in rows}

            await eventually(lambda: f"{marker}-last" in stored(), WAIT_S, "the last result")
            assert stored() == {real.request_id: "the real answer", last.request_id: "after"}
        finally:
            client.close()
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    letters = await dead_letters_with(bootstrap, f"forged {marker}", 2)
    assert sorted(letter.kind for letter in letters) == ["bad_signature", "unsigned"]
    assert {letter.source_topic for letter in letters} == {RESPONSES.name}
