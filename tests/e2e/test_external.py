"""`llmops up --no-embedded`: only our services, against Kafka and ClickHouse run elsewhere
(here: the session's broker and store, standing in for Apache Kafka and a ClickHouse server)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from llmops.clickhouse.client import connect
from services.router.service import GROUP_ID as ROUTER_GROUP
from tests.kafka_kit import start_at_the_end
from tests.signing_kit import TEST_SIGNING_KEY

pytestmark = pytest.mark.e2e
LLMOPS = str(Path(sys.executable).with_name("llmops"))


def test_no_embedded_runs_the_services_against_external_infrastructure(
    bootstrap: str, store_url: str, tmp_path: Path
) -> None:
    database = f"ext_{uuid.uuid4().hex[:8]}"
    pool = f"ext-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOPS_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLICKHOUSE_URL": f"{store_url}/{database}",
            "LLMOPS_DATA_DIR": str(tmp_path / "data"),
            "LLMOPS_METRICS_BASE_PORT": "0",
            "LLMOPS_STREAMS_APP_ID": f"streams-{pool}",
            "LLMOPS_POOLS": json.dumps([{"name": pool, "engine": "fake", "model": "fake"}]),
            "OTEL_SDK_DISABLED": "true",
            # external: no key is made for it, and the services refuse to start without one
            "LLMOPS_SIGNING_KEY": TEST_SIGNING_KEY,
        }
    )
    # Its router joins the default group: start it past what earlier tests left on the broker.
    asyncio.run(start_at_the_end(bootstrap, ROUTER_GROUP))
    run = subprocess.run(
        [LLMOPS, "up", "--no-embedded", "--demo", "--exit-after-demo", "--demo-requests", "6"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rows in ClickHouse `responses`: 6 of 6" in run.stdout
    assert not (tmp_path / "data" / "clickhouse").exists()  # no embedded store was started
    client = connect(f"{store_url}/{database}")
    try:
        # The session's broker also carries other tests' responses (this worker reads
        # llm.responses from the start): the demo's six are the ones its own pool served.
        served = client.query(
            "SELECT count() FROM responses FINAL WHERE pool = {pool:String}",
            parameters={"pool": pool},
        ).result_rows
    finally:
        client.close()
    assert served == [(6,)]
