"""Every consumer of the platform running on one real broker, for the consumer fuzz test.

In process: the router (llm.requests, and llm.pools.status through its TopicTail), a fake-
engine pool, the router's rescuer of a dead pool (it joins that pool's consumer group) and the
SDK's reply reader. As a child process: the metrics worker (faust) on the real store.

The broker is this module's own Tansu, not the session's: the fuzz run checks every record on
every input topic and every committed offset, so no other test's records may pass through.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.structs import RecordMetadata

from llmops.clickhouse.client import apply_migrations, ensure_database
from llmops.config import FakePool, PoolConfig, Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.local.broker import start_broker
from llmops.local.procs import free_port
from llmops.prompts.registry import prompt_set_from_data
from llmops.sdk import LLMOpsClient
from schemas import InferenceResult
from schemas.topics import (
    DLQ,
    EVENT_TYPE_HEADER,
    EXPERIMENTS,
    FEEDBACK,
    REQUESTS,
    RESPONSES,
    inference_group,
    inference_topic,
)
from services.inference.engines.fake import FakeEngine
from services.inference.heartbeat import Heartbeat
from services.inference.service import build_worker
from services.router.service import GROUP_ID as ROUTER_GROUP
from services.router.service import build_router
from streams.worker import WorkerOptions, topics_needed
from tests.integration.fuzz_kit import (
    DeadLetters,
    FuzzRecord,
    Headers,
    Source,
    TopicIndex,
    committed,
)
from tests.integration.platform import PROMPTS
from tests.kafka_kit import start_at_the_end

try:  # signed heartbeats and results (llmops/kafka/signing.py), where this tree has them
    signing: Any = importlib.import_module("llmops.kafka.signing")
except ImportError:
    signing = None

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
MAX_MESSAGE_BYTES = 65_536
POOL, DECOY, DEAD = "fuzz", "fuzz-decoy", "fuzz-dead"
CLIENT_ID = "fuzz-client"
APP_ID = "llmops-streams-fuzz"


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, alive: Callable[[], None]
) -> None:
    """Poll `check` until true; fail at once if a consumer died, or after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        alive()
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_S:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


class ConsumerDied(AssertionError):
    """A consumer process or task is gone: what the fuzz run must never see."""


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Tally:
    """What became of a topic's fuzz records (reported at the end of the run)."""

    records: int = 0
    processed: int = 0
    dead_lettered: int = 0
    skipped: int = 0  # rejected and logged by a consumer whose bad input is not dead-lettered
    crashes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # dead letters by kind


@dataclass(repr=False)
class Harness:
    bootstrap: str
    settings: Settings
    store: Any  # clickhouse-connect client on the test database
    client: LLMOpsClient
    producer: Producer
    services: dict[str, Any]
    tasks: dict[str, asyncio.Task[None]]
    streams: subprocess.Popen[bytes]
    streams_log: Path
    letters: DeadLetters
    responses: set[str]
    logs: LogCapture
    started: float = field(default_factory=time.monotonic)
    tallies: defaultdict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))

    def __repr__(self) -> str:
        return f"Harness({self.bootstrap})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints failing examples with this

    # --- liveness -------------------------------------------------------------------------

    def alive(self) -> None:
        """No consumer may have died: in-process loops still running, the worker still up."""
        for name, task in self.tasks.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                raise ConsumerDied(f"consumer {name} ended: {error!r}")
        if self.client._reader is None or self.client._reader.done():
            raise ConsumerDied("the SDK's reply reader ended")
        if self.streams.poll() is not None:
            tail = self.streams_text()[-4000:]
            raise ConsumerDied(f"the metrics worker exited ({self.streams.returncode}):\n{tail}")

    def streams_text(self) -> str:
        return self.streams_log.read_text(errors="replace")

    # --- input ----------------------------------------------------------------------------

    async def produce(self, topic: str, records: Sequence[FuzzRecord]) -> list[Source]:
        futures = [
            await self.producer.send(topic, r.value or b"", r.key, list(r.headers))  # type: ignore[arg-type]
            if r.value is not None
            else await self._tombstone(topic, r)
            for r in records
        ]
        acks: list[RecordMetadata] = list(await asyncio.gather(*futures))
        return [(a.topic, a.partition, a.offset) for a in acks]

    async def _tombstone(self, topic: str, record: FuzzRecord) -> asyncio.Future[RecordMetadata]:
        # llmops' Producer sends bytes; a tombstone (null value, so a key) goes through
        # aiokafka itself.
        future: asyncio.Future[RecordMetadata] = await self.producer._producer.send(
            topic, value=None, key=record.key or b"tombstone", headers=list(record.headers)
        )
        return future

    def signed(self, topic: str, records: Sequence[FuzzRecord], event: str) -> list[FuzzRecord]:
        """Valid and mutated documents signed as our services sign `event` records, so they
        reach the consumer's decoding (unsigned, they would only test the signature check);
        garbage stays unsigned."""
        if (
            signing is None
            or not hasattr(self.settings, "signing")
            or (keys := signing.keys_from_settings(self.settings)) is None
        ):
            return list(records)
        out = []
        for r in records:
            if r.what not in ("valid", "mutated") or r.value is None:
                out.append(r)
                continue
            drop = {EVENT_TYPE_HEADER, "llmops-signature"}
            headers: Headers = [(k, v) for k, v in r.headers if k not in drop]
            headers.append((EVENT_TYPE_HEADER, event.encode()))
            headers.append(keys.header(topic, headers, r.key, r.value))
            out.append(FuzzRecord(r.key, r.value, headers, r.what + " signed"))
        return out

    # --- output ---------------------------------------------------------------------------

    async def committed_past(self, groups: Sequence[str], sources: Sequence[Source]) -> bool:
        last: dict[tuple[str, int], int] = {}
        for topic, partition, offset in sources:
            last[(topic, partition)] = max(offset, last.get((topic, partition), -1))
        for group in groups:
            done = await committed(self.bootstrap, group, last)
            if any(done.get(tp, -1) <= offset for tp, offset in last.items()):
                return False
        return True

    def stored(self, table: str, column: str, values: Sequence[str]) -> set[str]:
        if not values:
            return set()
        # Compared as hex: hostile ids (NUL, tabs, quotes) need no escaping on the way.
        rows = self.store.query(
            f"SELECT DISTINCT hex({column}) FROM {table} "
            f"WHERE has({{v:Array(String)}}, hex({column}))",
            parameters={"v": [v.encode().hex().upper() for v in values]},
        ).result_rows
        return {bytes.fromhex(str(r[0])).decode() for r in rows}


def _start_streams(
    bootstrap: str, url: str, data_dir: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = data_dir / "streams.log"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLICKHOUSE_URL": url,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_METRICS_WINDOW_S": "1",
        "LLMOPS_SINK_FLUSH_S": "0.2",
        "LLMOPS_STREAMS_APP_ID": APP_ID,
        "LLMOPS_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        "OTEL_TRACES_EXPORTER": "none",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, log_path


@contextlib.asynccontextmanager
async def running_harness(store_url: str, tmp: Path) -> AsyncIterator[Harness]:
    port = free_port()
    broker = start_broker("127.0.0.1", port, tmp / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    stack = contextlib.AsyncExitStack()
    logs = LogCapture()
    for name in ("llmops", "services", "streams"):
        logging.getLogger(name).addHandler(logs)
    try:
        pools: list[PoolConfig] = [
            FakePool(name=POOL, model="fake", capacity=64),
            FakePool(name=DECOY, model="fake", cost_per_1k_tokens=1000.0),
            FakePool(name=DEAD, model="fake", cost_per_1k_tokens=1000.0),
        ]
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            pools=pools,
            max_message_bytes=MAX_MESSAGE_BYTES,
            fetch_max_wait_ms=20,
        )
        specs = [
            *platform_topics(p.name for p in pools),
            *topics_needed(WorkerOptions(app_id=APP_ID)),
        ]
        await asyncio.to_thread(ensure_topics, bootstrap, {s.name: s for s in specs}.values())

        url = f"{store_url}/fuzz_{port}"
        store = await asyncio.to_thread(ensure_database, url)
        stack.callback(store.close)
        await asyncio.to_thread(apply_migrations, store)
        streams, streams_log = _start_streams(bootstrap, url, tmp)

        def stop_streams() -> None:
            streams.terminate()
            try:
                streams.wait(30)
            except subprocess.TimeoutExpired:
                streams.kill()

        stack.callback(stop_streams)

        producers = [
            Producer(BusConfig.from_settings(settings, client_id=n, max_request_size=8 * 1_048_576))
            for n in ("router", "pool", "fuzz", "beats")
        ]
        for p in producers:
            await p.start()
            stack.push_async_callback(p.stop)
        engine = FakeEngine(model="fake")
        await engine.start()
        # The router's own group, started past what earlier tests left on this broker.
        await start_at_the_end(settings.kafka_bootstrap_servers, ROUTER_GROUP)
        router, router_loop = build_router(settings, prompt_set_from_data(PROMPTS), producers[0])
        worker, pool_loop = build_worker(settings, pools[0], engine, producers[1])
        tasks = {
            "router": asyncio.create_task(router_loop.run()),
            f"pool {POOL}": asyncio.create_task(pool_loop.run()),
        }

        async def stop_loops() -> None:
            router_loop.stop()
            pool_loop.stop()
            await asyncio.wait(set(tasks.values()), timeout=40)

        stack.push_async_callback(stop_loops)
        # One beat from the decoy and the dead pool, then silence: both become dead, and the
        # router's rescuers join their consumer groups.
        for pool in pools[1:]:
            await Heartbeat(settings, pool, producers[3], FakeEngine(model="fake")).beat()

        client = LLMOpsClient(
            bootstrap, client_id=CLIENT_ID, timeout_s=WAIT_S, fetch_max_wait_ms=20
        )
        await client.start()
        stack.push_async_callback(client.close)

        letters = DeadLetters()
        responses: set[str] = set()

        def on_response(raw: Any) -> None:
            with contextlib.suppress(ValueError, RecursionError):
                responses.add(InferenceResult.model_validate_json(raw.value or b"").request_id)

        for topic, index in ((DLQ, letters.index), (RESPONSES, on_response)):
            reader = TopicIndex(bootstrap, topic.name, index)
            await reader.start(topic.partitions)
            stack.push_async_callback(reader.stop)

        harness = Harness(
            bootstrap,
            settings,
            store,
            client,
            producers[2],
            {"router": router, "router_loop": router_loop, "pool": worker, "pool_loop": pool_loop},
            tasks,
            streams,
            streams_log,
            letters,
            responses,
            logs,
        )

        async def ready() -> bool:
            rescues = router_loop.control.rescues.active()
            return (
                "[^Worker]: Ready" in harness.streams_text()
                and DEAD in rescues
                and DECOY in rescues
            )

        await wait_until(ready, "the metrics worker and the rescuers of dead pools", harness.alive)
        # A request end to end: every in-process consumer has joined its group.
        result = await client.generate([{"role": "user", "content": "warm up"}])
        assert result.pool == POOL
        yield harness
    finally:
        await stack.aclose()
        for name in ("llmops", "services", "streams"):
            logging.getLogger(name).removeHandler(logs)
        broker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            broker.wait(5)
        if broker.poll() is None:
            broker.kill()


def payload_doc(value: bytes | None) -> Any:
    """The record's JSON document, or None when it has none."""
    try:
        return json.loads(value or b"")
    except (ValueError, RecursionError):
        return None


GROUPS = {
    REQUESTS.name: [ROUTER_GROUP, APP_ID],
    inference_topic(POOL).name: [inference_group(POOL)],
    inference_topic(DEAD).name: [inference_group(DEAD)],
    RESPONSES.name: [APP_ID],
    DLQ.name: [APP_ID],
    FEEDBACK.name: [APP_ID],
    EXPERIMENTS.name: [APP_ID],  # the experiment history sink (the router reads it groupless)
}
