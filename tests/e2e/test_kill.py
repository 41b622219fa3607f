"""kill -9 the inference consumer mid-load and restart it: every request still gets exactly
one final reply at the app, nothing is lost (uncommitted work is replayed; the SDK absorbs
the duplicates a replay produces)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from llmops.sdk import LLMOpsClient
from tests.signing_kit import TEST_SIGNING_KEY

pytestmark = pytest.mark.e2e
REQUESTS = 120


def _start(module: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *module], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def test_kill_9_mid_load_loses_nothing_and_answers_once(
    bootstrap: str, tmp_path: Path
) -> None:
    pool = f"kill-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOPS_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LLMOPS_DATA_DIR": str(tmp_path),
            "LLMOPS_METRICS_BASE_PORT": "0",
            "LLMOPS_SIGNING_KEY": TEST_SIGNING_KEY,
            # ~0.3 s per request at capacity 8: the load lasts seconds, so the kill lands mid-way.
            "LLMOPS_POOLS": json.dumps(
                [
                    {
                        "name": pool,
                        "engine": "fake",
                        "model": "fake",
                        "capacity": 8,
                        "fake_ttft_ms": 50,
                        "fake_tpot_ms": 25,
                    }
                ]
            ),
        }
    )
    router = _start(["services.router"], env, tmp_path / "router.log")
    inference = _start(["services.inference", "--pool", pool], env, tmp_path / "inference.log")
    try:
        async with LLMOpsClient(bootstrap, app="kill-test", timeout_s=180) as client:
            requests = [
                client.build_request([{"role": "user", "content": f"job {i}"}], max_tokens=10)
                for i in range(REQUESTS)
            ]
            pending = [await client.submit(r) for r in requests]
            waits = [
                asyncio.ensure_future(client.wait(r.request_id, p, 180))
                for r, p in zip(requests, pending, strict=True)
            ]
            while sum(w.done() for w in waits) < REQUESTS // 4:
                await asyncio.sleep(0.05)
                assert inference.poll() is None, (tmp_path / "inference.log").read_text()
            inference.send_signal(signal.SIGKILL)
            inference.wait()
            answered_before_kill = sum(w.done() for w in waits)
            inference = _start(
                ["services.inference", "--pool", pool], env, tmp_path / "inference.log"
            )
            results = await asyncio.gather(*waits)
            duplicates = client.duplicates
    finally:
        for proc in (router, inference):
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert answered_before_kill < REQUESTS
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert all(r.error is None and r.text for r in results)
    # The SDK resolved each request once; any extra replies from the replay were dropped.
    assert len({r.request_id for r in results}) == REQUESTS
    print(f"replies absorbed as duplicates: {duplicates}")
    assert "exited" not in (tmp_path / "router.log").read_text()
