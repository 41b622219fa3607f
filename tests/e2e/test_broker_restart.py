"""kill -9 of the embedded broker under `llmops up`: the supervisor restarts it on the same
port, makes the topics again (at their catalogue sizes), restarts the services that held
positions in the lost one, and requests are served again; Ctrl-C then stops every child
without killing any. The real CLI, supervisor, broker, store and router; a fake-engine pool."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from llmops.clickhouse.client import connect, login_for
from llmops.config import Settings
from llmops.kafka.topics import list_topics, platform_topics
from llmops.local.procs import free_port, wait_until
from llmops.local.readiness import StatusFeed
from llmops.sdk import LLMOpsClient
from schemas import utc_now
from tests.e2e.up_kit import start_up

pytestmark = pytest.mark.e2e
POOL = "fake"


def _pid_listening_as_broker(port: int) -> int:
    """The Tansu process serving `port` (found by its command line)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"broker" in argv and f"tcp://127.0.0.1:{port}".encode() in argv:
            return int(entry.name)
    raise LookupError(f"no broker process on port {port}")


def _first_serving_beat(bootstrap: str) -> datetime:
    feed = StatusFeed(bootstrap)
    try:
        for _ in range(20):
            for status in feed.poll(0.5):
                if status.pool == POOL and status.phase == "serving":
                    return status.ts
    finally:
        feed.close()
    raise AssertionError(f"no serving heartbeat of pool {POOL}")


async def _served(bootstrap: str) -> str | None:
    """The id of a request answered with text, or None if it was not (yet)."""
    try:
        async with LLMOpsClient(bootstrap, app="restart-test", timeout_s=10) as client:
            result = await client.generate([{"role": "user", "content": "hi"}], max_tokens=3)
    except Exception:  # the broker or the pool not back yet: the caller tries again
        return None
    return result.request_id if result.text else None


def _stored(env: dict[str, str], request_id: str) -> bool:
    url = f"http://127.0.0.1:{env['LLMOPS_STORE_PORT']}/llmops"
    settings = Settings(
        data_dir=Path(env["LLMOPS_DATA_DIR"]), store_port=int(env["LLMOPS_STORE_PORT"])
    )
    client = connect(url, login=login_for(url, settings))
    try:
        sql = "SELECT count() FROM responses FINAL WHERE request_id = {r:String}"
        return bool(client.query(sql, parameters={"r": request_id}).result_rows[0][0] == 1)
    finally:
        client.close()


def test_kill_9_of_the_broker_is_survived(tmp_path: Path) -> None:
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOPS_"))}
    env.update(
        {
            "LLMOPS_DATA_DIR": str(tmp_path / ".llmops"),
            "LLMOPS_BROKER_PORT": str(broker_port),
            "LLMOPS_STORE_PORT": str(free_port()),
            "LLMOPS_TRACES_PORT": str(free_port()),
            "LLMOPS_METRICS_BASE_PORT": "0",
            "LLMOPS_POOLS": json.dumps([{"name": POOL, "engine": "fake", "model": "fake"}]),
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = tmp_path / "up.log"
    up = start_up(env, log, 120)
    try:
        up_seen_at = utc_now()
        assert up.poll() is None, log.read_text()
        # "platform up" only once the pool can answer: its first "serving" beat came before.
        assert _first_serving_beat(bootstrap) <= up_seen_at, log.read_text()
        assert asyncio.run(_served(bootstrap)), log.read_text()

        old_broker = _pid_listening_as_broker(broker_port)
        os.kill(old_broker, signal.SIGKILL)
        killed_at = time.monotonic()
        while (request_id := asyncio.run(_served(bootstrap))) is None:
            assert up.poll() is None, log.read_text()
            assert time.monotonic() - killed_at < 120, log.read_text()[-3000:]
        print(f"served again {time.monotonic() - killed_at:.1f}s after kill -9 of the broker")
        # The metrics worker is back too: the new request's response reaches ClickHouse.
        wait_until(lambda: _stored(env, request_id), 60, "the response row", interval=0.5)

        assert _pid_listening_as_broker(broker_port) != old_broker  # same port, new process
        text = log.read_text()
        assert "broker exited with code -9" in text
        assert "broker lost everything it held in memory" in text
        assert "topics created again" in text
        sizes = list_topics(bootstrap)
        for spec in platform_topics([POOL]):
            assert sizes.get(spec.name) == spec.partitions, (spec.name, sizes)
    finally:
        before_stop = len(log.read_bytes())
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group
            up.wait(120)
    stop_text = log.read_bytes()[before_stop:].decode()
    assert up.returncode == 0, stop_text
    assert "stopped every child process" in stop_text
    assert "did not stop" not in stop_text, stop_text  # every child stopped by itself
