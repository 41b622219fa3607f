"""`llmops experiments` against the real broker and the real store: start, status, weights,
stop and promote as signed states on llm.experiments (read back through the live registry);
promote moves the production label through the gate; the report finds a planted 5-point
refusal rise at 5,000 per arm and says a planted sample ratio mismatch loudly; user mistakes
are one line."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from llmops.cli.app import app
from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.config import get_settings
from llmops.experiments.events import VariantSpec, start
from llmops.kafka.topics import ensure_topics
from schemas.topics import CORE_TOPICS
from streams.agents.feedback import experiment_row
from tests.integration.cli.test_prompts_cli import passing_run, prompt_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(bootstrap: str, store_url: str) -> str:
    ensure_topics(bootstrap, CORE_TOPICS)
    url = f"{store_url}/expcli_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    client.close()
    return url


@pytest.fixture
def env(store: str, bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("CLICKHOUSE_URL", store)
    monkeypatch.setenv("LLMOPS_ACTOR", "tester")
    get_settings.cache_clear()
    yield store
    get_settings.cache_clear()


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(*args: str, code: int = 2) -> str:
    result = run(*args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def status_of(name: str) -> dict[str, Any]:
    [doc] = json.loads(ok("experiments", "status", name, "--json"))
    assert isinstance(doc, dict)
    return doc


def test_start_status_weights_stop_and_promote(env: str, tmp_path: Path) -> None:
    prompt = f"exp-{uuid.uuid4().hex[:8]}"
    name = f"{prompt}-ab"
    path = prompt_file(tmp_path / "p.yaml", prompt, "one")
    ok("prompts", "push", str(path))
    ok("prompts", "push", str(prompt_file(path, prompt, "two")))
    started = ok(
        "experiments", "start", name, "--prompt", prompt,
        "--variant", f"control={prompt}@1:50", "--variant", f"new={prompt}@2:50",
        "--sticky", "session", "--guardrail", "refusal_rate,pii_rate",
    )  # fmt: skip
    assert f"experiment {name} started" in started
    doc = status_of(name)
    assert doc["status"] == "running" and doc["sticky"] == "session"
    assert doc["shares"] == {"control": 0.5, "new": 0.5}
    assert doc["guardrails"] == ["refusal_rate", "pii_rate"]
    assert name in ok("experiments", "status")

    ok("experiments", "weights", name, "control=40", "new=60")
    assert status_of(name)["shares"] == {"control": 0.4, "new": 0.6}

    # Mistakes: one line each, nothing published.
    assert "already running" in one_line_error(
        "experiments", "start", name, "--prompt", prompt,
        "--variant", f"control={prompt}@1", "--variant", f"new={prompt}@2",
    )  # fmt: skip
    assert "NAME=PROMPT@VERSION" in one_line_error(
        "experiments", "start", "x", "--prompt", prompt, "--variant", "oops", "--variant", "b"
    )
    assert "no version 9" in one_line_error(
        "experiments", "start", "x", "--prompt", prompt,
        "--variant", f"a={prompt}@1", "--variant", f"b={prompt}@9",
    )  # fmt: skip
    assert "unknown nope" in one_line_error(
        "experiments", "start", "x", "--prompt", prompt,
        "--variant", f"a={prompt}@1", "--variant", f"b={prompt}@2", "--guardrail", "nope",
    )  # fmt: skip
    assert "no experiment named" in one_line_error("experiments", "stop", "ghost")
    assert "unknown variants" in one_line_error("experiments", "weights", name, "ghost=1")

    # Production is protected: no promotion without a passing suite run of the winner.
    assert "protected" in one_line_error("experiments", "promote", name, "new")
    passing_run(env, prompt, 2)
    promoted = ok("experiments", "promote", name, "new")
    assert f"{prompt}@production -> v2 (new)" in promoted
    assert status_of(name)["status"] == "promoted"
    assert '"version": 2' in ok("prompts", "show", f"{prompt}@production", "--json")
    assert "promoted" in one_line_error("experiments", "stop", name)

    # A stopped experiment can start again under its name, with a newer revision.
    again = f"{prompt}-again"
    ok("experiments", "start", again, "--prompt", prompt,
       "--variant", f"a={prompt}@1", "--variant", f"b={prompt}@2")  # fmt: skip
    ok("experiments", "stop", again, "--reason", "enough")
    assert status_of(again)["status"] == "stopped"
    restarted = ok("experiments", "start", again, "--prompt", prompt,
                   "--variant", f"a={prompt}@1", "--variant", f"b={prompt}@2")  # fmt: skip
    assert "started" in restarted and status_of(again)["revision"] == 3


PLANTED_SQL = """
INSERT INTO responses (request_id, event_id, ts, prompt_name, prompt_version, experiment,
    variant, finish_reason, error_kind, output_tokens, ttft_ms, total_ms, cost_usd, signals)
SELECT
    concat({e:String}, '-', toString(number)), toString(number),
    toDateTime64('2026-12-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number),
    'p', if(number < {n:UInt64}, 1, 2), {e:String}, if(number < {n:UInt64}, 'control', 'new'),
    'stop', '', 80, 40.0, 300.0 + (cityHash64(number) % 100), 0.0001,
    map('refusal', toFloat64(if(number < {n:UInt64},
        number % 100 < 10, (number - {n:UInt64}) % 100 < 15)))
FROM numbers({n:UInt64} + {m:UInt64})
"""


def plant(url: str, name: str, control: int, treatment: int) -> None:
    """`control` and `treatment` responses: refusals 10% and 15%, exactly."""
    client = connect(url)
    try:
        client.command(PLANTED_SQL, parameters={"e": name, "n": control, "m": treatment})
        experiment = start(
            name,
            "p",
            [VariantSpec("control", "p", 1, 50), VariantSpec("new", "p", 2, 50)],
            datetime(2026, 11, 30, tzinfo=UTC),
        )
        row = experiment_row(experiment)
        client.insert("experiment_events", [list(row.values())], column_names=list(row))
    finally:
        client.close()


def test_the_report_finds_a_planted_refusal_rise_and_a_planted_sample_ratio_mismatch(
    env: str,
) -> None:
    name = f"rep-{uuid.uuid4().hex[:8]}"
    plant(env, name, 5000, 5000)
    doc = json.loads(ok("experiments", "report", name, "--json"))
    refusal = next(m for m in doc["metrics"] if m["metric"] == "refusal_rate")
    assert refusal["control"] == 0.10 and refusal["treatment"] == 0.15
    assert refusal["direction"] == "worse" and refusal["significant"]
    assert refusal["always_valid_adjusted"] < 0.05 and refusal["cs_low"] > 0
    assert refusal["test"] == "two-proportion z"
    latency = next(m for m in doc["metrics"] if m["metric"] == "latency_ms")
    assert latency["test"] == "Mann-Whitney U" and not latency["significant"]
    cost = next(m for m in doc["metrics"] if m["metric"] == "cost_per_request")
    assert cost["test"] == "delta method z"
    assert doc["srm"]["mismatch"] is False
    assert any("WORSE" in line and "refusal_rate" in line for line in doc["verdict"])
    table = ok("experiments", "report", name)
    assert "refusal rate" in table and "WORSE" in table and "MISMATCH" not in table

    skewed = f"srm-{uuid.uuid4().hex[:8]}"
    plant(env, skewed, 5000, 4500)  # a tenth of the treatment's users lost
    loud = ok("experiments", "report", skewed)
    assert "SAMPLE RATIO MISMATCH" in loud
    assert json.loads(ok("experiments", "report", skewed, "--json"))["srm"]["mismatch"] is True

    assert "no responses of experiment 'ghost'" in one_line_error("experiments", "report", "ghost")
