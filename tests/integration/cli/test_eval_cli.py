"""`llmops eval run` as CI runs it: a subprocess against the real broker, router and pools (in
this process) and the real store. Exit codes, the reports it writes, the rows it stores, and
the user's mistakes as one line each."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmops.cli.app import app
from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.config import Settings
from llmops.prompts.publish import publish_with_settings
from tests.integration.evals.kit import JSON_PROMPT, JUDGE, pools_and_engines, prompt_set
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]

PASSING: dict[str, Any] = {
    "name": "greeter-cli",
    "prompt": "greeter@production",
    "sampling": {"max_tokens": 2},
    "cases": [
        {
            "id": f"greets-{name}",
            "variables": {"name": name},
            "assertions": [
                {"type": "regex", "pattern": "^Hello"},
                {"type": "not_refusal"},
                {"type": "rubric", "check": "rubric", "model": JUDGE, "min_score": 4},
            ],
        }
        for name in ("Ada", "Bo", "Cy")
    ],
}
FLAKY: dict[str, Any] = {
    **PASSING,
    "name": "greeter-flaky",
    "cases": [
        {
            "id": "first",
            "variables": {"name": "Di"},
            "assertions": [{"type": "regex", "pattern": "^Hello"}],
        }
    ],
}


@pytest.fixture(scope="module")
async def env(bootstrap: str, store_url: str) -> AsyncIterator[dict[str, str]]:
    url = f"{store_url}/evalcli_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    client.close()
    pools, engines = pools_and_engines(uuid.uuid4().hex[:6])
    async with running_platform(bootstrap, pools, engines, prompt_set()):  # type: ignore[arg-type]
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLICKHOUSE_URL": url,
            "OTEL_TRACES_EXPORTER": "none",
            "COLUMNS": "200",
        }


async def eval_run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmops.cli",
        "eval",
        "run",
        *args,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def suite_file(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def stored(url: str, sql: str) -> list[tuple[Any, ...]]:
    client = connect(url)
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        client.close()


async def test_a_passing_suite_exits_0_with_reports_and_rows(
    env: dict[str, str], tmp_path: Path
) -> None:
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    code, out, err = await eval_run(
        env, suite_file(tmp_path, PASSING), "--junit", str(junit), "--json", str(report)
    )
    assert code == 0, out + err
    assert "greets-Ada" in out and "3/3 cases pass" in out and "PASS greeter-cli" in out
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "0"
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "greeter-cli [greeter@production]"
    assert [c.get("name") for c in suite.findall("testcase")] == [
        "greets-Ada",
        "greets-Bo",
        "greets-Cy",
    ]
    assert all(c.find("failure") is None for c in suite.findall("testcase"))
    data = json.loads(report.read_text())
    assert data["gate_passed"] is True and data["versions"] == [1]
    assert {r["seed"] for r in data["results"]} == {0}
    rows = stored(
        env["CLICKHOUSE_URL"],
        "SELECT prompt_name, prompt_version, label, passed, cases, passed_cases FROM eval_runs "
        f"FINAL WHERE run_id = '{data['run_id']}'",
    )
    assert rows == [("greeter", 1, "production", 1, 3, 3)]
    results = stored(
        env["CLICKHOUSE_URL"],
        f"SELECT count(), sum(passed) FROM eval_results FINAL WHERE run_id = '{data['run_id']}'",
    )
    assert results == [(3, 3)]


async def test_a_failing_suite_exits_1_and_names_the_flaky_case(
    env: dict[str, str], tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    code, out, err = await eval_run(
        env, suite_file(tmp_path, FLAKY), "--repeat", "2", "--junit", str(junit)
    )
    assert code == 1, out + err
    assert "flaky: first" in out and "FAIL greeter-flaky" in out
    [suite] = ET.parse(junit).getroot().findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["first [repeat 0]", "first [repeat 1]"]
    assert cases[0].find("failure") is None and cases[1].find("failure") is not None
    assert suite.get("failures") == "1"


async def test_compare_prints_the_paired_verdict(env: dict[str, str], tmp_path: Path) -> None:
    greets = {"type": "contains", "value": "Hello"}
    cases = [
        {"id": f"c{i}", "variables": {"name": f"N{i}"}, "assertions": [greets]} for i in range(4)
    ]
    suite = suite_file(tmp_path, {**PASSING, "name": "greeter-ab", "cases": cases})
    report = tmp_path / "report.json"
    args = ["--prompt", "greeter@2", "--compare", "greeter@production", "--repeat", "2"]
    code, out, err = await eval_run(env, suite, *args, "--json", str(report))
    assert code == 1, out + err  # v2 says "Bye": it fails, and significantly worse than v1
    assert "A = greeter@production (v1), B = greeter@2 (v2)" in out
    assert "8 paired results" in out and "McNemar exact p = 0.00781" in out
    assert "verdict: B passes fewer cases than A" in out
    data = json.loads(report.read_text())
    comparison = data["comparison"]
    assert (comparison["only_a_passes"], comparison["only_b_passes"]) == (8, 0)
    assert comparison["interval"][1] < 0
    assert data["versions"] == [2] and data["baseline"]["versions"] == [1]
    roles = stored(
        env["CLICKHOUSE_URL"],
        "SELECT prompt_version, role, passed FROM eval_runs FINAL WHERE run_id IN "
        f"('{data['run_id']}', '{data['baseline']['run_id']}') ORDER BY prompt_version",
    )
    assert roles == [(1, "baseline", 1), (2, "candidate", 0)]


async def test_json_schema_is_the_registrys(env: dict[str, str], tmp_path: Path) -> None:
    """The suite names no schema: the CLI reads the answering version's response schema from
    the live registry (llm.prompts, signed), as `llmops prompts push` published it."""
    version = prompt_set().versions[JSON_PROMPT][1]
    await publish_with_settings(
        Settings(kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"]), [version], []
    )
    cases = [
        {"id": "fits", "variables": {"payload": '{"n":1}'}},
        {"id": "wrong-type", "variables": {"payload": '{"n":"one"}'}},
        {"id": "not-json", "variables": {"payload": "one"}},
    ]
    data = {
        "name": "json-answers",
        "prompt": f"{JSON_PROMPT}@production",
        "sampling": {"max_tokens": 1},
        "defaults": {"assertions": [{"type": "json_schema"}]},
        "cases": cases,
    }
    report = tmp_path / "report.json"
    code, out, err = await eval_run(env, suite_file(tmp_path, data), "--json", str(report))
    assert code == 1, out + err
    results = {r["case"]: r for r in json.loads(report.read_text())["results"]}
    assert results["fits"]["passed"]
    assert "does not match the schema at n" in results["wrong-type"]["checks"][0]["message"]
    assert "not JSON" in results["not-json"]["checks"][0]["message"]


def one_line(args: list[str]) -> str:
    result = CliRunner().invoke(app, ["eval", "run", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    good = suite_file(tmp_path, PASSING)
    assert "does not exist" in one_line([str(tmp_path / "nope.yaml")])
    assert "NAME@VERSION or NAME@LABEL" in one_line([good, "--prompt", "greeter"])
    assert "NAME@VERSION or NAME@LABEL" in one_line([good, "--compare", "greeter@"])
    assert "letters, digits" in one_line([good, "--prompt", "gr eeter@1"])
    assert "same prompt" in one_line([good, "--compare", "other@1"])
    assert "--repeat" in one_line([good, "--repeat", "0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprompt: p@1\ncases: []\n", encoding="utf-8")
    assert one_line([str(bad)]).startswith("error: suite bad.yaml: cases")
    assert "is a directory" in one_line([str(tmp_path)])
    assert "--max-tokens" in one_line([good, "--max-tokens", "0"])


async def test_a_store_without_the_tables_is_refused_before_the_run(
    env: dict[str, str], store_url: str, tmp_path: Path
) -> None:
    bare = f"{store_url}/bare_{uuid.uuid4().hex[:8]}"
    ensure_database(bare).close()  # no migrations
    code, out, err = await eval_run({**env, "CLICKHOUSE_URL": bare}, suite_file(tmp_path, PASSING))
    assert code == 2 and "Traceback" not in out + err
    assert (
        err.strip()
        == "error: the store has no eval_runs table: run `llmops migrate` (or --no-store)"
    )
    assert "greets-Ada" not in out  # nothing ran
