"""The CLI's expected failures: one line, an exit code, no traceback (unless --debug); and
`llmops send` names its request id first (real broker and store; the router in process)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.cli.app import app
from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.config import get_settings
from llmops.local.otlp_receiver.launcher import start_traces, stop_traces
from llmops.local.procs import free_port
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def cli_env(bootstrap: str, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The CLI's settings point at the session's broker and store; returns the store URL."""
    url = f"{store_url}/cli_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    client.close()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("CLICKHOUSE_URL", url)
    monkeypatch.setenv("LLMOPS_TRACES_PORT", str(free_port()))  # no receiver listens there
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def one_error_line(args: list[str], code: int = 1) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.usefixtures("cli_env")
def test_out_of_range_max_tokens_names_the_bound() -> None:
    line = one_error_line(["send", "hi", "--max-tokens", "99999999"])
    assert line.startswith("error: invalid request: max_tokens: Input should be less than or equal")


@pytest.mark.usefixtures("cli_env")
def test_sql_syntax_error_is_clickhouses_message() -> None:
    line = one_error_line(["query", "SELEC 1"])
    assert line.startswith("error: ClickHouse: Code: 62. DB::Exception: Syntax error")


def test_store_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_URL", f"http://127.0.0.1:{free_port()}/llmops")
    get_settings.cache_clear()
    try:
        line = one_error_line(["query", "SELECT 1"])
    finally:
        get_settings.cache_clear()
    assert line.startswith("error: cannot reach ClickHouse (")


def test_broker_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    try:
        line = one_error_line(["send", "hi", "--timeout", "5"])
        topics = one_error_line(["topics"])
    finally:
        get_settings.cache_clear()
    assert line.startswith("error: cannot reach Kafka at 127.0.0.1:")
    assert topics.startswith("error: cannot reach Kafka at 127.0.0.1:")


@pytest.mark.usefixtures("cli_env")
def test_debug_shows_the_traceback() -> None:
    result = CliRunner().invoke(app, ["--debug", "query", "SELEC 1"])
    assert result.exit_code != 0
    assert result.exception is not None and "Syntax error" in str(result.exception)


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmops.cli",
        *args,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_prompt_mistakes_are_one_line_each(bootstrap: str) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "OTEL_TRACES_EXPORTER": "none"}
    async with running_platform(bootstrap):
        unknown, missing = await asyncio.gather(
            run_cli("send", "--prompt", "nope", env=env),
            run_cli("send", "--prompt", "greet", "--var", "nme=x", env=env),
        )
    for code, out, err in (unknown, missing):
        assert code == 1 and "Traceback" not in out + err
        assert out.startswith("request ") and len(out.splitlines()) == 1  # the id, only
        assert len(err.strip().splitlines()) == 1
    assert "invalid_request: unknown_prompt: unknown prompt 'nope'" in unknown[2]
    assert "failed: missing_variable: prompt 'greet' v" in missing[2]
    assert "missing_variable: missing_variable" not in missing[2]


async def test_send_prints_its_request_id_and_exports_the_root_span(
    bootstrap: str, store_url: str, tmp_path: Path
) -> None:
    url = f"{store_url}/cli_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    client.close()
    port = free_port()
    receiver = start_traces("127.0.0.1", port, url, tmp_path / "traces.log")
    try:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LLMOPS_TRACES_PORT": str(port)}
        async with running_platform(bootstrap):
            (code, out, err), (json_code, json_out, _) = await asyncio.gather(
                run_cli("send", "one two", "--max-tokens", "3", env=env),
                run_cli("send", "hi", "--json", env=env),
            )
    finally:
        stop_traces(receiver)  # flushes what it received
    assert code == 0, err
    request_id = out.splitlines()[0].removeprefix("request ")
    assert json_code == 0 and json.loads(json_out)["request_id"]
    store = connect(url)
    try:
        rows = store.query(
            "SELECT SpanName, SpanKind, SpanId, ParentSpanId, ServiceName FROM otel_traces "
            "WHERE SpanAttributes['llmops.request_id'] = {rid:String} ORDER BY Timestamp",
            parameters={"rid": request_id},
        ).result_rows
    finally:
        store.close()
    # The root (no parent) and the publish under it, both from the CLI's process.
    (root, root_kind, root_id, no_parent, service), send = rows
    assert (root, root_kind, no_parent, service) == ("chat", "Client", "", "llmops-cli")
    assert (send[0], send[1], send[3], send[4]) == (
        "send llm.requests",
        "Producer",
        root_id,
        "llmops-cli",
    )
