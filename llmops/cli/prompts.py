"""`llmops prompts`: the prompt registry: push files, list, show, diff, label, roll back, history.

Versions and labels live on the compacted llm.prompts topic (every command reads it to its end
first: llmops/prompts/live.py); the history of every version and move is in ClickHouse
(`prompt_history`, written by the metrics worker). Moving a protected label asks ClickHouse
for a passing suite run of the version (llmops/prompts/gate.py). Rendering is pure; the
commands at the bottom do the IO.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from llmops.cli.console import console, error_console
from llmops.cli.errors import Mistake, require_kafka
from llmops.cli.refs import parse_ref
from llmops.cli.send import parse_variables
from llmops.config import Settings, get_settings
from llmops.prompts.content import PromptFileError, read_prompt_files
from llmops.prompts.gate import (
    GateEvidence,
    LabelRefused,
    decide_move,
    newest_run,
    rollback_target,
)
from llmops.prompts.live import RegistryUnavailable, read_registry
from llmops.prompts.publish import (
    SEED_REASON,
    PushConflict,
    PushPlan,
    current_actor,
    plan_push,
    publish_verified,
    publish_with_settings,
    with_planned,
)
from llmops.prompts.registry import PromptError, PromptSet, render
from schemas import ChatMessage, LabelMove, PromptVersion
from schemas.prompts import PromptAddress

if TYPE_CHECKING:
    pass

commands = typer.Typer(no_args_is_help=True, help="The prompt registry: versions, labels, history.")

HISTORY_COLUMNS = (
    "ts",
    "event",
    "version",
    "label",
    "previous",
    "content_hash",
    "actor",
    "reason",
    "forced",
    "rollback",
    "suite_run_id",
)
MAX_HISTORY = 10_000


# ---------------------------------------------------------------- pure: references, text


def pick(prompts: PromptSet, address: PromptAddress) -> PromptVersion:
    """The version the address names (a number or a label); the newest without either."""
    name = address.name
    known = prompts.versions.get(name)
    if not known:
        listed = ", ".join(sorted(prompts.versions)) or "none"
        raise Mistake(f"unknown prompt {name!r} (the registry has: {listed})")
    if address.version is not None:
        if address.version not in known:
            have = ", ".join(str(v) for v in sorted(known))
            raise Mistake(f"prompt {name!r} has no version {address.version} (it has {have})")
        return known[address.version]
    if address.label is None:
        return known[max(known)]
    pointed = prompts.label_version(name, address.label)
    if pointed is None or pointed not in known:
        labels = ", ".join(sorted(prompts.labels(name))) or "none"
        raise Mistake(f"prompt {name!r} has no label {address.label!r} (its labels: {labels})")
    return known[pointed]


def rendered(version: PromptVersion, variables: Mapping[str, str] | None) -> list[ChatMessage]:
    """The messages as templates, or rendered with `variables` (converted to their types)."""
    if variables is None:
        return list(version.messages)
    try:
        return render(version, variables)
    except PromptError as exc:
        raise Mistake(str(exc)) from None


def content_text(version: PromptVersion, variables: Mapping[str, str] | None = None) -> list[str]:
    """A version as reviewable text: settings as YAML, then each message whole (rendered
    when `variables` are given)."""
    head: dict[str, Any] = {}
    content = version.content()
    for key in ("model", "description", "params", "variables", "response_schema", "metadata"):
        if content.get(key) not in (None, "", {}):
            head[key] = content[key]
    lines = yaml.safe_dump(head, sort_keys=True, allow_unicode=True).splitlines() if head else []
    for number, message in enumerate(rendered(version, variables), 1):
        lines.append(f"--- message {number}: {message.role} ---")
        lines.extend(message.content.splitlines() or [""])
    return lines


def unified_diff(
    name: str,
    a: PromptVersion,
    b: PromptVersion,
    a_ref: str,
    b_ref: str,
    variables: Mapping[str, str] | None = None,
) -> str:
    diff = difflib.unified_diff(
        content_text(a, variables),
        content_text(b, variables),
        fromfile=f"{name}@{a_ref} (v{a.version})",
        tofile=f"{name}@{b_ref} (v{b.version})",
        lineterm="",
    )
    return "\n".join(diff)


def _labels_text(labels: dict[str, int]) -> str:
    return ", ".join(f"{label}→v{v}" for label, v in sorted(labels.items())) or "-"


def list_table(prompts: PromptSet) -> Table:
    table = Table(title=f"prompts ({len(prompts.versions)})")
    for column in ("prompt", "versions", "latest", "labels", "model", "hash"):
        table.add_column(column)
    for name in sorted(prompts.versions):
        latest = prompts.latest(name)
        assert latest is not None
        table.add_row(
            escape(name),
            str(len(prompts.versions[name])),
            f"v{latest.version}",
            escape(_labels_text(prompts.labels(name))),
            escape(latest.model or "-"),
            latest.content_hash[:12],
        )
    return table


def _variables_table(version: PromptVersion) -> Table:
    table = Table(title="variables", title_justify="left")
    for column in ("name", "type", "required", "default", "description"):
        table.add_column(column)
    for name, spec in sorted(version.variables.items()):
        default = "" if spec.default is None else json.dumps(spec.default)
        table.add_row(
            escape(name),
            spec.type,
            "yes" if spec.required else "no",
            escape(default),
            escape(spec.description),
        )
    return table


def show_version(
    prompts: PromptSet, version: PromptVersion, variables: Mapping[str, str] | None = None
) -> None:
    messages = rendered(version, variables)  # first: a rendering mistake prints nothing else
    labels = prompts.labels_of(version.name, version.version)
    params = version.params.model_dump(exclude_none=True)
    console.print(
        f"[bold]{escape(version.name)}[/] v{version.version}  "
        f"labels: {escape(', '.join(labels) or '-')}  hash: {version.content_hash}"
    )
    console.print(
        f"model: {escape(version.model or '-')}  params: {escape(json.dumps(params) or '-')}"
    )
    if version.description:
        console.print(escape(version.description))
    if version.variables:
        console.print(_variables_table(version))
    how = " (rendered)" if variables is not None else ""
    for number, message in enumerate(messages, 1):
        console.print(Panel(escape(message.content), title=f"{number}. {message.role}{how}"))
    if version.response_schema is not None:
        console.print("response schema: " + escape(json.dumps(version.response_schema)))
    if version.metadata:
        console.print("metadata: " + escape(json.dumps(version.metadata, sort_keys=True)))


def push_table(plan: PushPlan, moves: Sequence[LabelMove]) -> Table:
    table = Table(title="push")
    for column in ("prompt", "version", "status", "hash", "labels moved"):
        table.add_column(column)
    moved: dict[tuple[str, int], list[str]] = {}
    for move in moves:
        moved.setdefault((move.name, move.version), []).append(move.label)
    for version in plan.new_versions:
        table.add_row(
            escape(version.name),
            f"v{version.version}",
            "[green]new[/]",
            version.content_hash[:12],
            escape(", ".join(moved.pop((version.name, version.version), []))),
        )
    for draft, number in plan.unchanged:
        table.add_row(
            escape(draft.name),
            f"v{number}",
            "unchanged",
            draft.content_hash[:12],
            escape(", ".join(moved.pop((draft.name, number), []))),
        )
    return table


def move_line(move: LabelMove) -> str:
    before = f"v{move.previous}" if move.previous is not None else "(new label)"
    how = ""
    if move.rollback:
        how = " (rollback)"
    elif move.forced:
        how = f" (forced: {move.reason})"
    elif move.suite_run_id:
        how = f" (suite run {move.suite_run_id})"
    return f"{move.name}@{move.label}: {before} -> v{move.version}{how}"


def history_table(name: str, rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(title=f"history of {name} ({len(rows)} events)")
    for column in ("ts", "event", "version", "label", "from", "actor", "why"):
        table.add_column(column)
    for row in rows:
        why = []
        if row["forced"]:
            why.append("forced")
        if row["rollback"]:
            why.append("rollback")
        if row["suite_run_id"]:
            why.append(f"suite run {row['suite_run_id']}")
        if row["reason"]:
            why.append(str(row["reason"]))
        if row["event"] == "version":
            # A version's reason column holds the file it was pushed from.
            why.append(f"hash {str(row['content_hash'])[:12]}")
        table.add_row(
            str(row["ts"])[:23],
            str(row["event"]),
            f"v{row['version']}",
            escape(str(row["label"]) or "-"),
            f"v{row['previous']}" if row["previous"] else "-",
            escape(str(row["actor"]) or "-"),
            escape("; ".join(why)),
        )
    return table


def moves_from_rows(name: str, rows: Iterable[dict[str, Any]]) -> list[LabelMove]:
    """History rows of one label as the moves they record (for a rollback's target)."""
    return [
        LabelMove(
            name=name,
            label=str(row["label"]),
            version=int(row["version"]),
            previous=int(row["previous"]) or None,
            rollback=bool(row["rollback"]),
            ts=row["ts"],
        )
        for row in rows
        if row["event"] == "label"
    ]


# ---------------------------------------------------------------- IO


def _registry(settings: Settings) -> PromptSet:
    require_kafka(settings.kafka_bootstrap_servers)
    with error_console.status("reading the registry (llm.prompts, llm.experiments)"):
        try:
            return asyncio.run(read_registry(settings))
        except RegistryUnavailable as exc:
            raise ConnectionError(f"{exc} (KAFKA_BOOTSTRAP_SERVERS)") from None


def gate_evidence(settings: Settings, name: str, version: int, *, force: bool) -> GateEvidence:
    """The gate's evidence from ClickHouse; a forced move does without a store."""
    from llmops.clickhouse.client import connect_settings

    try:
        client = connect_settings(settings)
    except Exception:
        if force:
            return GateEvidence(None)
        raise
    try:
        return newest_run(client, name, version, settings.gate_suites.get(name))
    finally:
        client.close()


def read_history(
    settings: Settings, name: str, label: str | None = None, limit: int = MAX_HISTORY
) -> list[dict[str, Any]]:
    where = "prompt_name = {name:String}"
    parameters: dict[str, Any] = {"name": name, "limit": limit}
    if label is not None:
        where += " AND event = 'label' AND label = {label:String}"
        parameters["label"] = label
    sql = (
        f"SELECT {', '.join(HISTORY_COLUMNS)} FROM prompt_history FINAL WHERE {where} "
        "ORDER BY ts, source_offset LIMIT {limit:UInt32}"
    )
    from llmops.clickhouse.client import connect_settings

    client = connect_settings(settings)
    try:
        result = client.query(sql, parameters=parameters)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    finally:
        client.close()


def _decide(
    settings: Settings,
    prompts: PromptSet,
    name: str,
    version: int,
    label: str,
    *,
    force: bool,
    reason: str,
    actor: str,
    rollback: bool = False,
) -> LabelMove | None:
    protected = label in settings.protected_labels and not rollback
    evidence = gate_evidence(settings, name, version, force=force) if protected else None
    try:
        return decide_move(
            prompts,
            name,
            version,
            label,
            protected=settings.protected_labels,
            evidence=evidence,
            actor=actor,
            force=force,
            reason=reason,
            rollback=rollback,
        )
    except LabelRefused as exc:
        raise Mistake(str(exc)) from None


def plan_labels(
    settings: Settings,
    prompts: PromptSet,
    plan: PushPlan,
    *,
    force: bool,
    reason: str,
    actor: str,
) -> list[LabelMove]:
    """Every wanted label's move, or Mistake for the first the gate refuses (nothing is
    published then: a push is all or nothing)."""
    after = with_planned(prompts, plan)
    moves = []
    for want in plan.labels:
        move = _decide(
            settings, after, want.name, want.version, want.label,
            force=force, reason=reason, actor=actor,
        )  # fmt: skip
        if move is not None:
            moves.append(move)
    return moves


def push_files(
    settings: Settings,
    targets: Sequence[Path],
    *,
    force: bool = False,
    reason: str = "",
    seed: bool = False,
    dry_run: bool = False,
) -> tuple[PushPlan, list[LabelMove]]:
    """Read, plan, gate and publish; what was (or would be) published."""
    try:
        drafts = read_prompt_files(targets).drafts
    except PromptFileError as exc:
        raise Mistake(str(exc)) from None
    if not drafts:
        raise Mistake(f"no prompts found in {', '.join(str(t) for t in targets)}")
    if seed:
        force, reason = True, reason or SEED_REASON
    prompts = _registry(settings)
    actor = current_actor()
    plan = plan_push(drafts, prompts, seed=seed, actor=actor)
    moves = plan_labels(settings, prompts, plan, force=force, reason=reason, actor=actor)
    if not dry_run:
        try:
            asyncio.run(publish_verified(settings, plan.new_versions, moves))
        except PushConflict as exc:
            raise Mistake(str(exc)) from None
    return plan, moves


# ---------------------------------------------------------------- commands


@commands.command()
def push(
    paths: Annotated[
        list[Path], typer.Argument(help="prompt files, or directories of them (*.yaml, *.yml)")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="move protected labels without a passing suite run")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="why (required with --force)")] = "",
    seed: Annotated[
        bool,
        typer.Option("--seed", help="a seed push: only labels not set yet, forced as 'seed'"),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be published, publish nothing")
    ] = False,
) -> None:
    """Publish new versions (an unchanged content creates none) and move the files' labels."""
    if force and not reason.strip():
        raise Mistake('--force needs --reason "why" (it is recorded in the history)')
    plan, moves = push_files(
        get_settings(), paths, force=force, reason=reason, seed=seed, dry_run=dry_run
    )
    console.print(push_table(plan, moves))
    for move in moves:
        console.print(escape(move_line(move)))
    verb = "would publish" if dry_run else "published"
    console.print(f"{verb} {len(plan.new_versions)} new version(s), {len(moves)} label move(s)")


@commands.command("list")
def list_prompts() -> None:
    """Every prompt with its versions and labels."""
    prompts = _registry(get_settings())
    console.print(list_table(prompts))


@commands.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@LABEL")],
    as_json: Annotated[bool, typer.Option("--json", help="the version as JSON")] = False,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="NAME=VALUE: show the messages rendered")
    ] = None,
) -> None:
    """One version: settings, variables, messages (the newest version without @)."""
    variables = parse_variables(var) if var else None
    address = parse_ref(ref)
    name = address.name
    prompts = _registry(get_settings())
    version = pick(prompts, address)
    if as_json:
        data = version.model_dump(mode="json", exclude={"labels", "event_id", "ts"})
        data["labels"] = prompts.labels_of(name, version.version)
        console.print_json(json.dumps(data))
        return
    show_version(prompts, version, variables)


@commands.command()
def diff(
    name: Annotated[str, typer.Argument(help="the prompt")],
    a: Annotated[str, typer.Argument(help="a version number or a label")],
    b: Annotated[str, typer.Argument(help="a version number or a label")],
    var: Annotated[
        list[str] | None, typer.Option("--var", help="NAME=VALUE: diff the rendered messages")
    ] = None,
) -> None:
    """Unified diff of two versions' content (settings and messages, rendered with --var)."""
    variables = parse_variables(var) if var else None
    prompts = _registry(get_settings())
    first, second = pick(prompts, parse_ref(f"{name}@{a}")), pick(prompts, parse_ref(f"{name}@{b}"))
    text = unified_diff(name, first, second, a, b, variables)
    if not text:
        console.print(f"{escape(name)}@{escape(a)} and @{escape(b)} have the same content")
        return
    for line in text.splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(escape(line), style=style, highlight=False, soft_wrap=True)


@commands.command()
def history(
    name: Annotated[str, typer.Argument(help="the prompt")],
    label: Annotated[str | None, typer.Option("--label", help="only this label's moves")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_HISTORY)] = 1000,
) -> None:
    """Every version and label move of a prompt, oldest first (ClickHouse prompt_history)."""
    rows = read_history(get_settings(), name, label, limit)
    if not rows:
        raise Mistake(f"no history for prompt {name!r} (is the metrics worker running?)")
    console.print(history_table(name, rows))


@commands.command()
def label(
    name: Annotated[str, typer.Argument(help="the prompt")],
    version: Annotated[int, typer.Argument(help="the version the label moves to", min=1)],
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="production, staging, ...")],
    force: Annotated[
        bool, typer.Option("--force", help="move a protected label without a passing suite run")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="why (required with --force)")] = "",
) -> None:
    """Point a label at a version (protected labels need a passing suite run)."""
    if force and not reason.strip():
        raise Mistake('--force needs --reason "why" (it is recorded in the history)')
    if not re.fullmatch(r"[A-Za-z0-9_.:/\-]{1,128}", label_name):
        raise Mistake(f"{label_name!r} is not a label name (letters, digits, _ . : / -)")
    settings = get_settings()
    prompts = _registry(settings)
    move = _decide(
        settings, prompts, name, version, label_name,
        force=force, reason=reason, actor=current_actor(),
    )  # fmt: skip
    if move is None:
        console.print(f"{escape(name)}@{escape(label_name)} already points at v{version}")
        return
    asyncio.run(publish_with_settings(settings, [], [move]))
    console.print(escape(move_line(move)))


def _label_moves(settings: Settings, prompts: PromptSet, name: str, label: str) -> list[LabelMove]:
    """The label's moves: the store's history where it knows more than the topic (a
    compacted topic keeps the newest move only), else the topic's."""
    on_topic = prompts.history.get(name, {}).get(label, [])
    try:
        stored = moves_from_rows(name, read_history(settings, name, label))
    except Exception:  # no store, or no history table yet: the topic's moves will do
        stored = []
    return stored if len(stored) > len(on_topic) else list(on_topic)


@commands.command()
def rollback(
    name: Annotated[str, typer.Argument(help="the prompt")],
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="the label to move back")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")] = "",
) -> None:
    """Move a label back to the version it held before its current one."""
    settings = get_settings()
    prompts = _registry(settings)
    current = prompts.label_version(name, label_name)
    if current is None:
        raise Mistake(f"prompt {name!r} has no label {label_name!r}")
    target = rollback_target(_label_moves(settings, prompts, name, label_name))
    if target is None or target == current:
        raise Mistake(f"{name}@{label_name} has no earlier version to roll back to")
    move = _decide(
        settings, prompts, name, target, label_name,
        force=False, reason=reason or f"rollback from v{current}", actor=current_actor(),
        rollback=True,
    )  # fmt: skip
    if move is None:  # cannot happen: target != current
        return
    asyncio.run(publish_with_settings(settings, [], [move]))
    console.print(escape(move_line(move)))
