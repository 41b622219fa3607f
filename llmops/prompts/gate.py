"""The release gate of protected labels, and which version a rollback returns to.

A protected label (Settings.protected_labels, `production` by default) moves only to a version
whose newest suite run passed: the newest row of `eval_runs` for (prompt, version) must say
passed = 1 (the suite's own verdict; `llmops eval run` writes it), of the prompt's gate suite
where Settings.gate_suites names one (else a trivial suite of anyone's could open the gate). A
version that passed once and failed since is refused: the newest verdict is the one that
counts.
Without one the move is refused, unless forced with a reason; the reason, who forced it and
the suite run that allowed a move travel in the LabelMove event and into `prompt_history`. A
rollback returns a label to a version that held it before: it passed whatever gate it met
then, so it is not asked again.

`decide_move` and `rollback_target` are pure; `newest_run` asks ClickHouse.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from llmops.prompts.registry import PromptSet
from schemas import LabelMove

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

EVAL_RUNS_TABLE = "eval_runs"
NEWEST_RUN_SQL = f"""
SELECT run_id, suite, pass_rate, finished_at, passed
FROM {EVAL_RUNS_TABLE}
WHERE prompt_name = {{name:String}} AND prompt_version = {{version:UInt32}}
  AND ({{suite:String}} = '' OR suite = {{suite:String}})
ORDER BY finished_at DESC, passed ASC
LIMIT 1
"""


class LabelRefused(ValueError):
    """A label move the registry will not make, with what to do instead."""


@dataclass(frozen=True)
class SuiteRun:
    """A suite run of one prompt version (a row of eval_runs)."""

    run_id: str
    suite: str
    pass_rate: float
    finished_at: datetime | None = None


@dataclass(frozen=True)
class GateEvidence:
    """What the store says about a version: `run`, its newest run when that one passed;
    `failed`, its newest run when that one failed; `evals_table` False when the store has no
    eval_runs table at all (no suite ever ran there)."""

    run: SuiteRun | None
    evals_table: bool = True
    suite: str | None = None  # the gate suite asked for; None: any suite
    failed: SuiteRun | None = None


def newest_run(client: Client, name: str, version: int, suite: str | None = None) -> GateEvidence:
    """The version's newest suite run (of `suite` when given), passing or not: two runs
    finished in the same millisecond count as failed if either failed."""
    if str(client.command(f"EXISTS TABLE {EVAL_RUNS_TABLE}")).strip() != "1":
        return GateEvidence(None, evals_table=False, suite=suite)
    result = client.query(
        NEWEST_RUN_SQL, parameters={"name": name, "version": version, "suite": suite or ""}
    )
    if not result.result_rows:
        return GateEvidence(None, suite=suite)
    run_id, found_suite, pass_rate, finished_at, passed = result.result_rows[0]
    run = SuiteRun(str(run_id), str(found_suite), float(pass_rate), finished_at)
    if int(passed) == 1:
        return GateEvidence(run, suite=suite)
    return GateEvidence(None, suite=suite, failed=run)


def _refusal(name: str, version: int, label: str, evidence: GateEvidence) -> str:
    which = f"run of suite {evidence.suite!r}" if evidence.suite else "suite run"
    if not evidence.evals_table:
        why = "the store has no eval_runs table (no suite has run against it)"
    elif evidence.failed is not None:
        failed = evidence.failed
        why = (
            f"the newest {which} of version {version} failed "
            f"({failed.suite!r}, run {failed.run_id}, pass rate {failed.pass_rate:.0%})"
        )
    else:
        why = f"version {version} has no passing {which}"
    suite = evidence.suite or "SUITE"
    if evidence.failed is not None:
        todo = "fix the prompt (a new version) or the suite and run it again"
    else:
        todo = f"run {'it' if evidence.suite else 'a suite'} first"
    return (
        f"label {label!r} is protected and {why}: {todo} "
        f"(`llmops eval run {suite} --prompt {name}@{version}`), or move it anyway "
        'with --force --reason "why"'
    )


def decide_move(
    prompts: PromptSet,
    name: str,
    version: int,
    label: str,
    *,
    protected: Collection[str],
    evidence: GateEvidence | None,
    actor: str,
    force: bool = False,
    reason: str = "",
    rollback: bool = False,
) -> LabelMove | None:
    """The move to publish, None when the label already points there; raises LabelRefused.

    `evidence` may be None where the label is not protected (nothing to ask)."""
    if name not in prompts.versions:
        raise LabelRefused(f"unknown prompt {name!r}")
    if version not in prompts.versions[name]:
        known = ", ".join(str(v) for v in sorted(prompts.versions[name]))
        raise LabelRefused(f"prompt {name!r} has no version {version} (it has {known})")
    if force and not reason.strip():
        raise LabelRefused('--force needs --reason "why" (it is recorded in the history)')
    previous = prompts.label_version(name, label)
    if previous == version:
        return None
    run = evidence.run if evidence is not None else None
    if label in protected and not rollback and run is None and not force:
        raise LabelRefused(_refusal(name, version, label, evidence or GateEvidence(None)))
    return LabelMove(
        name=name,
        label=label,
        version=version,
        previous=previous,
        actor=actor[:128],
        reason=reason.strip()[:1024],
        # Forced only where the gate would have refused: a forced move with a passing run
        # is an ordinary one (the run is what allowed it).
        forced=force and run is None and label in protected and not rollback,
        rollback=rollback,
        suite_run_id=run.run_id if run is not None else None,
    )


def rollback_target(moves: Sequence[LabelMove]) -> int | None:
    """The version a label returns to: the one it held before its current tenure.

    The moves, oldest first, as a stack: a move pushes its version, a rollback pops the one it
    undid, so rolling back twice goes two versions back rather than toggling. Where only one
    move is known (a compacted topic keeps the newest move alone), its `previous` is the
    answer."""
    if not moves:
        return None
    stack: list[int] = []
    for move in moves:
        if move.rollback and stack:
            stack.pop()
            if not stack or stack[-1] != move.version:
                stack.append(move.version)
        else:
            stack.append(move.version)
    # Consecutive repeats are one tenure.
    tenures = [v for i, v in enumerate(stack) if i == 0 or stack[i - 1] != v]
    if len(tenures) >= 2:
        return tenures[-2]
    if len(moves) == 1 and not moves[0].rollback:
        return moves[0].previous
    return None  # back at the first tenure: nothing earlier held the label
