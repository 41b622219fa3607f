"""The whole platform through its CLI, as a user runs it: `llmops up`, `llmops demo`, Ctrl-C,
and a second start on the same data directory. Real broker, real ClickHouse engine, the real
transformers engine with the tiny in-process model, and one trace across every hop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from llmops.cli.traces import rows_as_dicts, trace_tree
from llmops.clickhouse.client import connect, login_for
from llmops.config import Settings
from llmops.local.procs import free_port, port_open, wait_until
from tests.e2e.up_kit import LLMOPS, start_up

pytestmark = pytest.mark.e2e
POOL = "tiny"
RUNNING: dict[str, subprocess.Popen[bytes]] = {}


def _env(data_dir: Path) -> dict[str, str]:
    broker, store, traces = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOPS_"))}
    env.update(
        {
            "LLMOPS_DATA_DIR": str(data_dir),
            "LLMOPS_BROKER_PORT": str(broker),
            "LLMOPS_STORE_PORT": str(store),
            "LLMOPS_TRACES_PORT": str(traces),
            "LLMOPS_METRICS_BASE_PORT": "0",
            "LLMOPS_METRICS_WINDOW_S": "2",
            "LLMOPS_SEGMENT_ATTRIBUTES": '["locale", "plan"]',
            "LLMOPS_POOLS": json.dumps(
                [{"name": POOL, "engine": "transformers", "model": "tiny-random", "capacity": 8}]
            ),
            # For the CLI commands run against the platform:
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker}",
            "CLICKHOUSE_URL": f"http://127.0.0.1:{store}/llmops",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("platform") / ".llmops"
    env = _env(data_dir)
    log = data_dir.parent / "up.log"
    up = start_up(env, log, 180)
    try:
        assert up.poll() is None, log.read_text()
        env["UP_LOG"] = str(log)
        RUNNING["up"] = up
        yield env
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(90)
        env["UP_EXIT"] = str(up.returncode)


def _connect(env: dict[str, str]) -> Client:
    """A client on the stack's store, logged in with the credentials in its data dir."""
    url = env["CLICKHOUSE_URL"]
    settings = Settings(
        data_dir=Path(env["LLMOPS_DATA_DIR"]), store_port=int(env["LLMOPS_STORE_PORT"])
    )
    return connect(url, login=login_for(url, settings))


def _query(env: dict[str, str], sql: str, **params: object) -> list[tuple[object, ...]]:
    client = _connect(env)
    try:
        return list(client.query(sql, parameters=params).result_rows)
    finally:
        client.close()


def _eventually(check: object, timeout: float, what: str) -> None:
    wait_until(check, timeout, what, interval=0.5)  # type: ignore[arg-type]


def test_demo_traffic_gets_every_reply_and_every_row(platform: dict[str, str]) -> None:
    env = {
        **platform,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{platform['LLMOPS_TRACES_PORT']}",
    }
    demo = subprocess.run(
        [LLMOPS, "demo", "--requests", "12"], env=env, capture_output=True, text=True, timeout=300
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "rows in ClickHouse `responses`: 12 of 12" in demo.stdout
    assert _query(platform, "SELECT count() FROM responses FINAL WHERE app = 'demo'")[0][0] == 12
    assert _query(platform, "SELECT count() FROM requests FINAL WHERE app = 'demo'")[0][0] == 12
    rows = _query(platform, "SELECT DISTINCT pool, model, engine FROM responses")
    assert rows == [(POOL, "tiny-random", "transformers")]
    # Window aggregates close after the window length and count every response once.
    _eventually(
        lambda: (
            _query(
                platform,
                "SELECT sum(requests) FROM metric_windows FINAL WHERE pool = {p:String}",
                p=POOL,
            )[0][0]
            == 12
        ),
        60,
        "metric windows to count all 12 responses",
    )
    # Quality windows too: the whole groups count all 12, the locale segments the 9 demo
    # requests that carry a locale (the summarize prompt's carry none), and the JSON
    # requests (one in four) have their answers checked.
    quality = (
        "SELECT sumIf(responses, segment = ''), sumIf(responses, startsWith(segment, 'locale=')),"
        " sumIf(rate_totals['json_invalid'], segment = '') FROM quality_windows FINAL"
        " WHERE pool = {p:String}"
    )
    _eventually(
        lambda: _query(platform, quality, p=POOL)[0] == (12, 9, 3),
        60,
        "quality windows to count the 12 responses, 9 by locale, 3 asked for JSON",
    )
    report = subprocess.run(
        [LLMOPS, "report", "--since", "1h"],
        env=platform,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert "support-answer" in report.stdout
    alerts = subprocess.run(
        [LLMOPS, "alerts", "--all", "--json"],
        env=platform,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert alerts.returncode == 0, alerts.stdout + alerts.stderr
    for line in alerts.stdout.splitlines():
        assert json.loads(line)["kind"] in ("drift", "safety", "fairness")


def test_one_trace_connects_every_hop(platform: dict[str, str]) -> None:
    env = {
        **platform,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{platform['LLMOPS_TRACES_PORT']}",
    }
    demo = subprocess.run(
        [LLMOPS, "demo", "--requests", "3"], env=env, capture_output=True, text=True, timeout=300
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    request_id = _query(
        platform, "SELECT request_id FROM responses FINAL ORDER BY ts DESC LIMIT 1"
    )[0][0]
    wanted = {"llmops-demo", "router", f"inference-{POOL}", "streams"}

    def services_in_trace() -> set[str]:
        rows = _query(
            platform,
            "SELECT DISTINCT ServiceName FROM otel_traces WHERE TraceId IN (SELECT TraceId "
            "FROM otel_traces WHERE SpanAttributes['llmops.request_id'] = {r:String})",
            r=request_id,
        )
        return {str(r[0]) for r in rows}

    _eventually(lambda: wanted <= services_in_trace(), 60, f"spans of {wanted} in one trace")
    client = _connect(platform)
    try:
        result = client.query(
            "SELECT * FROM otel_traces WHERE TraceId IN (SELECT TraceId FROM otel_traces "
            "WHERE SpanAttributes['llmops.request_id'] = {r:String})",
            parameters={"r": request_id},
        )
    finally:
        client.close()
    tree = trace_tree(rows_as_dicts(result.column_names, result.result_rows))
    assert tree.is_connected(), tree.render()
    assert tree.roots[0].service == "llmops-demo"
    genai = [
        n for n in tree.spans.values() if n.service == f"inference-{POOL}" and n.kind == "Consumer"
    ]
    assert genai, tree.render()
    shown = subprocess.run(
        [LLMOPS, "trace", str(request_id)], env=platform, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0 and "router" in shown.stdout and "streams" in shown.stdout


def test_query_and_topics_commands(platform: dict[str, str]) -> None:
    q = subprocess.run(
        [LLMOPS, "query", "SELECT count() AS n FROM dead_letters", "--json"],
        env=platform,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert q.returncode == 0 and '"n"' in q.stdout
    t = subprocess.run([LLMOPS, "topics"], env=platform, capture_output=True, text=True, timeout=60)
    assert t.returncode == 0 and "llm.requests" in t.stdout and f"llm.inference.{POOL}" in t.stdout


def test_ctrl_c_stops_everything_and_a_second_start_reuses_the_data(
    platform: dict[str, str], tmp_path: Path
) -> None:
    # Runs last in this module: stop the platform the way a user does, then start again.
    up_log = Path(platform["UP_LOG"])
    ports = [
        int(platform[k]) for k in ("LLMOPS_BROKER_PORT", "LLMOPS_STORE_PORT", "LLMOPS_TRACES_PORT")
    ]
    before = _query(platform, "SELECT count() FROM responses FINAL")[0][0]
    up = RUNNING["up"]
    os.killpg(up.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    assert up.wait(180) == 0  # tiers of 20 s grace at most, on a loaded machine
    assert not any(port_open("127.0.0.1", p) for p in ports)
    log = up_log.read_text()
    assert "stopped every child process" in log
    # In order: the services drained while the broker and the store were still up.
    assert "did not stop" not in log, log[-3000:]
    again = subprocess.run(
        [LLMOPS, "up", "--demo", "--exit-after-demo", "--demo-requests", "3"],
        env=platform,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "migrations: 0 applied" in again.stdout  # same data directory: nothing to redo
    assert "rows in ClickHouse `responses`: 3 of 3" in again.stdout
    assert not any(port_open("127.0.0.1", p) for p in ports)
    assert before >= 15
