"""`llmops prompts` against the real broker and the real store, with the real metrics worker
writing the history: push is idempotent and numbers changed content max + 1; a protected
label is refused without a passing suite run, moves with one, and moves forced only with a
reason, which the history records; rollback returns the label to its previous version; user
mistakes are one line."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from llmops.cli.app import app
from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.config import get_settings
from llmops.experiments.events import stop
from llmops.experiments.publish import publish_with_settings
from llmops.kafka.topics import ensure_topics
from llmops.local.stack import seed_experiments
from llmops.prompts.files import demo_prompts_file
from llmops.prompts.live import read_registry
from llmops.prompts.publish import PushConflict, publish_verified, push_seed
from schemas import LabelMove, PromptVersion
from schemas.topics import CORE_TOPICS
from tests.integration.streams.test_worker import Worker

pytestmark = pytest.mark.integration
WAIT_S = 90.0  # a deadline against a hung test, never a measurement
# Columns of migration 017's eval_runs that a passing run fills (the fixture migrates).
EVAL_RUN_COLUMNS = (
    "run_id",
    "suite",
    "prompt_name",
    "prompt_version",
    "label",
    "cases",
    "passed_cases",
    "pass_rate",
    "passed",
    "repeat",
    "started_at",
    "finished_at",
)


@dataclass(frozen=True)
class Registry:
    url: str
    worker: Worker


@pytest.fixture(scope="module")
def registry(
    bootstrap: str, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """Topics, a migrated database of this module, and a metrics worker writing history."""
    ensure_topics(bootstrap, CORE_TOPICS)
    url = f"{store_url}/prompts_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    client.close()
    data_dir = tmp_path_factory.mktemp("prompts-worker")
    worker = Worker(bootstrap, url, data_dir, f"streams-prompts-{uuid.uuid4().hex[:6]}")
    try:
        yield Registry(url, worker)
    finally:
        worker.stop()


@pytest.fixture
def env(registry: Registry, bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("CLICKHOUSE_URL", registry.url)
    monkeypatch.setenv("LLMOPS_ACTOR", "tester")
    get_settings.cache_clear()
    yield registry.url
    get_settings.cache_clear()


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["prompts", *args])


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


def prompt_file(path: Path, name: str, text: str, labels: str = "[]") -> Path:
    path.write_text(
        f"name: {name}\n"
        "variables: {topic: string}\n"
        f"labels: {labels}\n"
        "params: {temperature: 0.3}\n"
        f"messages:\n  - {{role: user, content: '{text} {{{{ topic }}}}'}}\n"
    )
    return path


def store_rows(url: str, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
    client = connect(url)
    try:
        return [tuple(row) for row in client.query(sql, parameters=parameters).result_rows]
    finally:
        client.close()


def wait_for_history(url: str, name: str, events: int) -> list[dict[str, Any]]:
    sql = (
        "SELECT event, version, label, previous, actor, reason, forced, rollback, suite_run_id "
        "FROM prompt_history FINAL WHERE prompt_name = {name:String} ORDER BY ts, source_offset"
    )
    columns = sql.split("FROM")[0].removeprefix("SELECT ").replace(" ", "").split(",")
    deadline = time.monotonic() + WAIT_S
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        rows = store_rows(url, sql, name=name)
        if len(rows) >= events:
            return [dict(zip(columns, row, strict=True)) for row in rows]
        time.sleep(0.3)
    raise AssertionError(f"history of {name}: {len(rows)} of {events} events:\n{rows}")


def passing_run(
    url: str, name: str, version: int, suite: str = "smoke", *, passed: bool = True
) -> str:
    """A suite run's row as `llmops eval run` writes it (passed = False: a failing one)."""
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    client = connect(url)
    try:
        now = datetime.now(UTC)
        cases_passed, rate = (3, 1.0) if passed else (1, 1 / 3)
        row = [run_id, suite, name, version, "", 3, cases_passed, rate, int(passed), 1, now, now]
        client.insert("eval_runs", [row], column_names=list(EVAL_RUN_COLUMNS))
    finally:
        client.close()
    return run_id


def test_push_is_idempotent_and_changed_content_is_a_new_version(env: str, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    path = prompt_file(tmp_path / "p.yaml", name, "one", labels="[staging]")
    first = ok("push", str(path))
    assert "published 1 new version(s), 1 label move(s)" in first
    assert f"{name}@staging: (new label) -> v1" in first
    again = ok("push", str(path))
    assert "published 0 new version(s), 0 label move(s)" in again and "unchanged" in again
    prompt_file(path, name, "two", labels="[staging]")
    changed = ok("push", str(tmp_path))
    assert "published 1 new version(s), 1 label move(s)" in changed
    assert f"{name}@staging: v1 -> v2" in changed

    listed = ok("list")
    assert name in listed and "staging→v2" in listed
    shown = ok("show", f"{name}@staging")
    assert f"{name} v2" in shown and "two {{ topic }}" in shown and "temperature" in shown
    assert '"version": 1' in ok("show", f"{name}@1", "--json")
    diff = ok("diff", name, "1", "staging")
    assert "-one {{ topic }}" in diff and "+two {{ topic }}" in diff
    assert "same content" in ok("diff", name, "2", "staging")
    assert "two refunds" in ok("show", f"{name}@2", "--var", "topic=refunds")
    rendered = ok("diff", name, "1", "2", "--var", "topic=refunds")
    assert "-one refunds" in rendered and "+two refunds" in rendered
    assert "missing variable(s) topic" in one_line_error("show", f"{name}@2", "--var", "x=1")
    history = wait_for_history(env, name, 4)
    assert [(r["event"], r["version"], r["label"]) for r in history] == [
        ("version", 1, ""),
        ("label", 1, "staging"),
        ("version", 2, ""),
        ("label", 2, "staging"),
    ]
    # Who pushed each version, and from which file.
    assert {r["actor"] for r in history} == {"tester"}
    assert history[0]["reason"].endswith("p.yaml")


def test_a_protected_label_needs_a_passing_run_or_a_forced_reason_and_rolls_back(
    env: str, tmp_path: Path
) -> None:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    path = prompt_file(tmp_path / "p.yaml", name, "one")
    ok("push", str(path))
    ok("push", str(prompt_file(path, name, "two")))
    refused = one_line_error("label", name, "1", "production")
    assert "'production' is protected" in refused and "--force" in refused

    run_id = passing_run(env, name, 1)
    moved = ok("label", name, "1", "production")
    assert f"{name}@production: (new label) -> v1 (suite run {run_id})" in moved
    assert "already points at v1" in ok("label", name, "1", "production")
    assert "no passing suite run" in one_line_error("label", name, "2", "production")
    assert "--reason" in one_line_error("label", name, "2", "production", "--force")
    forced = ok("label", name, "2", "production", "--force", "--reason", "incident 7 hotfix")
    assert "v1 -> v2 (forced: incident 7 hotfix)" in forced

    back = ok("rollback", name, "production")
    assert f"{name}@production: v2 -> v1 (rollback)" in back
    assert "no earlier version" in one_line_error("rollback", name, "production")
    assert "prompt 'v1'" not in ok("show", f"{name}@production")
    assert f"{name} v1" in ok("show", f"{name}@production")

    history = wait_for_history(env, name, 5)
    moves = [r for r in history if r["event"] == "label"]
    assert [(m["version"], m["previous"]) for m in moves] == [(1, 0), (2, 1), (1, 2)]
    assert moves[0]["suite_run_id"] == run_id and not moves[0]["forced"]
    assert moves[1]["forced"] == 1 and moves[1]["reason"] == "incident 7 hotfix"
    assert moves[1]["actor"] == "tester"
    assert moves[2]["rollback"] == 1 and moves[2]["reason"] == "rollback from v2"
    shown = ok("history", name)
    for text in ("forced", "incident 7 hotfix", "rollback", f"suite run {run_id}"):
        assert text in shown


def test_the_seed_file_pushes_once(env: str) -> None:
    ok("push", "--seed", str(demo_prompts_file()))
    again = ok("push", "--seed", str(demo_prompts_file()))
    assert "published 0 new version(s), 0 label move(s)" in again
    shown = ok("show", "support-answer@production")
    assert "support-answer v1" in shown


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("show", "nope-never-pushed"), "unknown prompt 'nope-never-pushed'"),
        (("show", "a b"), "is not a prompt reference"),
        (("diff", "support-answer", "1", "99"), "has no version 99"),
        (("label", "support-answer", "1", "bad label!"), "is not a label name"),
        (("label", "support-answer", "42", "x"), "has no version 42"),
        (("rollback", "support-answer", "no-such-label"), "has no label 'no-such-label'"),
        (("history", "nope-never-pushed"), "no history for prompt"),
    ],
)
def test_mistakes_are_one_line(env: str, args: tuple[str, ...], expected: str) -> None:
    ok("push", "--seed", str(demo_prompts_file()))
    assert expected in one_line_error(*args)


def test_a_bad_prompt_file_is_one_line_and_publishes_nothing(env: str, tmp_path: Path) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    (tmp_path / "good.yaml").write_text(
        f"name: {name}\nmessages: [{{role: user, content: fine}}]\n"
    )
    (tmp_path / "zbad.yaml").write_text(
        f"name: {name}-2\nvariables: {{a: string}}\n"
        "messages: [{role: user, content: '{{ a }} {{ b }}'}]\n"
    )
    line = one_line_error("push", str(tmp_path))
    assert "zbad.yaml" in line and "undeclared variable(s) b" in line
    assert "unknown prompt" in one_line_error("show", name)
    assert "no such file" in one_line_error("push", str(tmp_path / "missing"))


def test_the_broker_down_is_one_line(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.local.procs import free_port

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    assert "cannot reach Kafka" in one_line_error("list", code=1)


def test_the_seed_push_of_llmops_up_never_moves_a_label_back(env: str, tmp_path: Path) -> None:
    name = f"seed-{uuid.uuid4().hex[:8]}"
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "prompts:\n"
        f"  - name: {name}\n"
        "    versions:\n"
        "      - {version: 1, labels: [production], messages: [{role: user, content: one}]}\n"
        "      - {version: 2, labels: [candidate], messages: [{role: user, content: two}]}\n"
    )
    settings = get_settings()
    plan, moves = asyncio.run(push_seed(settings, seed))
    assert [v.version for v in plan.new_versions] == [1, 2]
    production = next(m for m in moves if m.label == "production")
    assert production.forced and production.reason == "seed" and production.actor == "llmops up"
    # A protected move made since (forced here) survives the next start's seed push.
    ok("label", name, "2", "production", "--force", "--reason", "promote")
    plan, moves = asyncio.run(push_seed(settings, seed))
    assert plan.new_versions == [] and moves == []
    assert f"{name} v2" in ok("show", f"{name}@production")


def test_a_protected_move_with_the_store_down_is_one_line(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.local.procs import free_port

    ok("push", "--seed", str(demo_prompts_file()))
    monkeypatch.setenv("CLICKHOUSE_URL", f"http://127.0.0.1:{free_port()}/llmops")
    get_settings.cache_clear()
    line = one_line_error("label", "support-answer", "2", "production", code=1)
    assert "cannot reach ClickHouse" in line


def test_a_push_that_lost_the_race_for_a_number_moves_no_label(env: str) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}"

    def numbered(text: str) -> PromptVersion:
        return PromptVersion.model_validate(
            {"name": name, "version": 1, "messages": [{"role": "user", "content": text}]}
        )

    settings = get_settings()
    winner = numbered("the first push")
    asyncio.run(publish_verified(settings, [winner], []))
    # A second push that counted max + 1 = 1 as well, before the first was visible to it.
    loser_move = LabelMove(name=name, label="staging", version=1, actor="late")
    with pytest.raises(PushConflict, match=f"took {name} v1"):
        asyncio.run(publish_verified(settings, [numbered("the second push")], [loser_move]))
    shown = ok("show", f"{name}@1")
    assert "the first push" in shown and "labels: -" in shown


def test_a_dry_run_publishes_nothing(env: str, tmp_path: Path) -> None:
    name = f"dry-{uuid.uuid4().hex[:8]}"
    path = prompt_file(tmp_path / "p.yaml", name, "one", labels="[staging]")
    planned = ok("push", "--dry-run", str(path))
    assert "would publish 1 new version(s), 1 label move(s)" in planned
    assert "unknown prompt" in one_line_error("show", name)
    assert "published 1 new version(s)" in ok("push", str(path))


def test_the_seed_files_experiments_start_once_and_a_stopped_one_stays_stopped(
    env: str, tmp_path: Path
) -> None:
    name = f"seedx-{uuid.uuid4().hex[:8]}"
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "prompts:\n"
        f"  - name: {name}\n"
        "    versions:\n"
        "      - {version: 1, labels: [production], messages: [{role: user, content: one}]}\n"
        "      - {version: 2, messages: [{role: user, content: two}]}\n"
        "experiments:\n"
        f"  - name: {name}-ab\n"
        f"    prompt_name: {name}\n"
        "    variants:\n"
        "      - {name: control, prompt_version: 1, weight: 50}\n"
        "      - {name: treatment, prompt_version: 2, weight: 50}\n"
    )
    settings = get_settings()
    asyncio.run(push_seed(settings, seed))
    assert asyncio.run(seed_experiments(settings, seed)) == [f"{name}-ab"]
    live = asyncio.run(read_registry(settings)).experiments[f"{name}-ab"]
    assert live.status == "running" and [v.name for v in live.variants] == ["control", "treatment"]
    assert asyncio.run(seed_experiments(settings, seed)) == []  # the next start adds nothing
    # Stopped by an operator: the next start's seed leaves it stopped.
    asyncio.run(publish_with_settings(settings, stop(live, datetime.now(UTC), "done")))
    assert asyncio.run(seed_experiments(settings, seed)) == []
    assert asyncio.run(read_registry(settings)).experiments[f"{name}-ab"].status == "stopped"


def test_a_prompts_gate_suite_is_the_only_one_that_opens_its_protected_label(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"gated-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LLMOPS_GATE_SUITES", json.dumps({name: f"{name}-gate"}))
    get_settings.cache_clear()
    ok("push", str(prompt_file(tmp_path / "p.yaml", name, "one")))
    passing_run(env, name, 1)  # a passing run of another suite ("smoke") does not count
    refused = one_line_error("label", name, "1", "production")
    assert f"no passing run of suite '{name}-gate'" in refused
    run_id = passing_run(env, name, 1, suite=f"{name}-gate")
    assert f"(suite run {run_id})" in ok("label", name, "1", "production")
    # The newest verdict counts: version 2 passed once, then failed the gate suite.
    ok("push", str(prompt_file(tmp_path / "p.yaml", name, "two")))
    passing_run(env, name, 2, suite=f"{name}-gate")
    failed_id = passing_run(env, name, 2, suite=f"{name}-gate", passed=False)
    refused = one_line_error("label", name, "2", "production")
    assert f"newest run of suite '{name}-gate' of version 2 failed" in refused
    assert failed_id in refused
