"""`llmops alerts` against the real store (chDB behind the ClickHouse HTTP interface) and the
real broker: seeded open alerts are listed, resolved ones only with --all, --since and --json
work, the store being down is one line, and --follow prints an alert published on llm.alerts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from llmops.cli.app import app
from llmops.clickhouse.client import apply_migrations, ensure_database
from llmops.config import get_settings
from llmops.kafka.topics import ensure_topics
from llmops.local.procs import free_port
from schemas.monitoring import Alert
from schemas.topics import ALERTS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC).replace(microsecond=0)
WAIT_S = 60.0  # a deadline against a hung test, never a measurement
SEEDED_COLUMNS = (
    "alert_id",
    "event_id",
    "ts",
    "severity",
    "kind",
    "rule",
    "subject",
    "state",
    "opened_at",
    "message",
    "prompt_name",
    "prompt_version",
    "segment",
    "evidence",
    "inserted_at",
)


def seeded(
    alert_id: str, state: str, opened: datetime, changed: datetime, **fields: Any
) -> list[Any]:
    values: dict[str, Any] = {
        "alert_id": alert_id,
        "event_id": uuid.uuid4().hex,
        "ts": changed,
        "severity": "warning",
        "kind": "safety",
        "rule": "refusal_rate",
        "subject": f"subject-{alert_id}",
        "state": state,
        "opened_at": opened,
        "message": f"message of {alert_id}",
        "prompt_name": "support",
        "prompt_version": 3,
        "segment": "",
        "evidence": {"statistic": "rate", "value": "0.3", "threshold": "0.1"},
        "inserted_at": changed,
    }
    values.update(fields)
    return [values[column] for column in SEEDED_COLUMNS]


@pytest.fixture
def alerts_env(store_url: str, bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database of its own, seeded: two open alerts, one opened then resolved (its
    resolution replaces its opening), one open for three days."""
    url = f"{store_url}/alerts_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    hour = timedelta(hours=1)
    client.insert(
        "alerts",
        [
            seeded(
                "crit", "open", NOW - hour, NOW - hour, severity="critical", rule="pii_output_rate"
            ),
            seeded(
                "drift",
                "open",
                NOW - 2 * hour,
                NOW - 2 * hour,
                kind="drift",
                rule="drift_latency_ms",
                evidence={"statistic": "psi", "value": "0.41", "threshold": "0.1"},
            ),
            seeded("gone", "open", NOW - 3 * hour, NOW - 3 * hour),
            seeded("old", "open", NOW - timedelta(days=3), NOW - timedelta(days=3)),
        ],
        column_names=list(SEEDED_COLUMNS),
    )
    client.insert(
        "alerts",
        [seeded("gone", "resolved", NOW - 3 * hour, NOW - 30 * timedelta(minutes=1))],
        column_names=list(SEEDED_COLUMNS),
    )
    client.close()
    monkeypatch.setenv("CLICKHOUSE_URL", url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def json_ids(output: str) -> list[str]:
    return [json.loads(line)["alert_id"] for line in output.splitlines() if line.strip()]


@pytest.mark.usefixtures("alerts_env")
def test_open_alerts_are_listed_resolved_ones_hidden() -> None:
    output = cli("alerts")
    assert "3 open alerts" in output
    for shown in ("subject-crit", "subject-drift", "subject-old", "pii_output_rate"):
        assert shown in output
    assert "statistic=psi value=0.41 threshold=0.1" in output
    assert "subject-gone" not in output
    # Most severe first, then newest first.
    assert (
        output.index("subject-crit") < output.index("subject-drift") < output.index("subject-old")
    )


@pytest.mark.usefixtures("alerts_env")
def test_all_shows_the_resolution_in_place_of_the_opening() -> None:
    output = cli("alerts", "--all")
    assert "4 alerts" in output and "subject-gone" in output and "resolved" in output
    rows = [json.loads(line) for line in cli("alerts", "--all", "--json").splitlines()]
    assert sorted(row["alert_id"] for row in rows) == ["crit", "drift", "gone", "old"]
    gone = next(row for row in rows if row["alert_id"] == "gone")
    assert gone["state"] == "resolved"
    assert gone["evidence"] == {"statistic": "rate", "value": "0.3", "threshold": "0.1"}
    assert datetime.fromisoformat(gone["opened_at"]) == NOW - timedelta(hours=3)


@pytest.mark.usefixtures("alerts_env")
def test_json_lines_parse() -> None:
    assert json_ids(cli("alerts", "--json")) == ["crit", "drift", "old"]


@pytest.mark.usefixtures("alerts_env")
def test_since_hides_older_alerts() -> None:
    assert json_ids(cli("alerts", "--json", "--since", "1d")) == ["crit", "drift"]
    assert json_ids(cli("alerts", "--json", "--since", "90m")) == ["crit"]
    # Opened three hours ago, resolved half an hour ago: a change since 45 minutes.
    assert json_ids(cli("alerts", "--all", "--json", "--since", "45m")) == ["gone"]
    since = (NOW - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%S")
    assert json_ids(cli("alerts", "--json", "--since", since)) == ["crit", "drift"]


@pytest.mark.usefixtures("alerts_env")
def test_limit_says_there_is_more() -> None:
    output = cli("alerts", "--limit", "1")
    assert "subject-crit" in output and "subject-drift" not in output
    assert "first 1 shown; --limit for more" in output


def test_no_open_alerts(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{store_url}/alerts_{uuid.uuid4().hex[:8]}"
    apply_migrations(ensure_database(url))
    monkeypatch.setenv("CLICKHOUSE_URL", url)
    get_settings.cache_clear()
    try:
        assert cli("alerts").strip() == "no open alerts"
        assert cli("alerts", "--json") == ""
    finally:
        get_settings.cache_clear()


def test_store_down_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_URL", f"http://127.0.0.1:{free_port()}/llmops")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["alerts"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach ClickHouse (")


def test_follow_with_the_broker_down_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["alerts", "--follow"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Kafka at 127.0.0.1:")


async def publish(bootstrap: str, alert: Alert) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(ALERTS.name, alert.to_bytes(), key=alert.subject.encode())
    finally:
        await producer.stop()


async def read_line(stream: asyncio.StreamReader) -> str:
    line = await asyncio.wait_for(stream.readline(), WAIT_S)
    assert line, "the command ended early"
    return line.decode()


async def test_follow_prints_new_alerts_as_they_arrive(alerts_env: str, bootstrap: str) -> None:
    ensure_topics(bootstrap, [ALERTS])
    # History: an alert published long ago is not news, nor is one the listing showed.
    await publish(
        bootstrap,
        Alert(
            severity="info",
            kind="drift",
            subject="ancient",
            message="m",
            alert_id="ancient",
            ts=NOW - timedelta(days=1),
        ),
    )
    env = {
        **os.environ,
        "CLICKHOUSE_URL": alerts_env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OTEL_TRACES_EXPORTER": "none",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmops.cli",
        "alerts",
        "--follow",
        "--json",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        listed = [json.loads(await read_line(proc.stdout))["alert_id"] for _ in range(3)]
        assert listed == ["crit", "drift", "old"]
        assert "following llm.alerts" in await read_line(proc.stderr)
        fresh = Alert(
            severity="critical",
            kind="fairness",
            rule="fairness_refusal",
            subject="support v3 locale=de",
            alert_id=f"new-{uuid.uuid4().hex[:6]}",
            message="refusals 2x for locale=de",
            evidence={"ratio": "2.1"},
        )
        await publish(bootstrap, fresh)
        shown = json.loads(await read_line(proc.stdout))
        assert shown["alert_id"] == fresh.alert_id and shown["state"] == "open"
        assert shown["evidence"] == {"ratio": "2.1"}
        await publish(bootstrap, fresh.model_copy(update={"state": "resolved"}))
        resolved = json.loads(await read_line(proc.stdout))
        assert (resolved["alert_id"], resolved["state"]) == (fresh.alert_id, "resolved")
        proc.send_signal(signal.SIGINT)
        # communicate() drains both pipes while waiting: a child blocked on a full pipe
        # would otherwise look like one that does not stop.
        out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        rest = out.decode() + err.decode()
        assert proc.returncode == 0, rest
        assert "Traceback" not in rest and "ancient" not in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
