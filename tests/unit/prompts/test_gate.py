"""The protected-label gate and rollback targets (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from llmops.prompts.gate import GateEvidence, LabelRefused, SuiteRun, decide_move, rollback_target
from llmops.prompts.registry import PromptSet
from schemas import LabelMove, PromptVersion


def version_of(**data: Any) -> PromptVersion:
    """A version from plain data, as a file or the topic gives it."""
    return PromptVersion.model_validate(data)


PROTECTED = ["production"]
PASSED = GateEvidence(SuiteRun("run-1", "smoke", 1.0))


def _prompts() -> PromptSet:
    prompts = PromptSet()
    for n in (1, 2, 3):
        prompts.add(
            version_of(name="p", version=n, messages=[{"role": "user", "content": f"v{n}"}])
        )
    prompts.move_label(LabelMove(name="p", label="production", version=1))
    return prompts


def _decide(version: int, label: str = "production", **kw: Any) -> LabelMove | None:
    kw.setdefault("evidence", GateEvidence(None))
    return decide_move(_prompts(), "p", version, label, protected=PROTECTED, actor="ada", **kw)


def test_a_protected_label_is_refused_without_a_passing_run() -> None:
    with pytest.raises(LabelRefused, match=r"'production' is protected.*no passing suite run"):
        _decide(2)
    with pytest.raises(LabelRefused, match="no eval_runs table"):
        _decide(2, evidence=GateEvidence(None, evals_table=False))


def test_a_prompt_with_a_gate_suite_is_told_which_suite_to_run() -> None:
    with pytest.raises(LabelRefused) as refused:
        _decide(2, evidence=GateEvidence(None, suite="p-gate"))
    assert "no passing run of suite 'p-gate'" in str(refused.value)
    assert "`llmops eval run p-gate --prompt p@2`" in str(refused.value)


def test_a_version_whose_newest_run_failed_is_refused_and_the_run_named() -> None:
    failed = SuiteRun("run-9", "p-gate", 0.5)
    with pytest.raises(LabelRefused) as refused:
        _decide(2, evidence=GateEvidence(None, suite="p-gate", failed=failed))
    assert "the newest run of suite 'p-gate' of version 2 failed" in str(refused.value)
    assert "run run-9, pass rate 50%" in str(refused.value)
    assert "--force" in str(refused.value)


def test_a_passing_run_allows_the_move_and_is_recorded() -> None:
    move = _decide(2, evidence=PASSED)
    assert move is not None
    assert (move.version, move.previous, move.suite_run_id, move.forced) == (2, 1, "run-1", False)
    assert move.actor == "ada" and move.key == "p@production"


def test_a_forced_move_needs_and_records_a_reason() -> None:
    with pytest.raises(LabelRefused, match="--reason"):
        _decide(2, force=True, reason="  ")
    move = _decide(2, force=True, reason="hotfix for incident 42")
    assert move is not None and move.forced and move.reason == "hotfix for incident 42"
    with pytest.raises(ValueError, match="needs a reason"):
        LabelMove(name="p", label="production", version=2, forced=True)


def test_unprotected_labels_move_freely_and_a_no_op_is_none() -> None:
    move = _decide(3, "staging", evidence=None)
    assert move is not None and move.previous is None and not move.forced
    assert _decide(1) is None  # production already points at v1


def test_a_rollback_skips_the_gate() -> None:
    move = _decide(2, rollback=True, reason="bad answers")
    assert move is not None and move.rollback and not move.forced


def test_unknown_versions_and_prompts_are_refused() -> None:
    with pytest.raises(LabelRefused, match=r"no version 7 \(it has 1, 2, 3\)"):
        _decide(7)
    with pytest.raises(LabelRefused, match="unknown prompt 'q'"):
        decide_move(_prompts(), "q", 1, "x", protected=PROTECTED, evidence=None, actor="a")


def _moves(*steps: tuple[int, bool]) -> list[LabelMove]:
    return [LabelMove(name="p", label="l", version=v, rollback=r) for v, r in steps]


def test_rollback_targets_walk_back_through_the_tenures() -> None:
    assert rollback_target([]) is None
    assert rollback_target(_moves((1, False))) is None
    assert rollback_target(_moves((1, False), (2, False), (3, False))) == 2
    # Rolled back 3 -> 2: the next rollback goes to 1, not back to 3.
    assert rollback_target(_moves((1, False), (2, False), (3, False), (2, True))) == 1
    # Rolled back to the first tenure: nothing earlier (no toggling back to 2).
    assert rollback_target(_moves((1, False), (2, False), (1, True))) is None
    # Repeats are one tenure.
    assert rollback_target(_moves((1, False), (2, False), (2, False))) == 1
    # Only the newest move known (a compacted topic): its `previous`.
    only = [LabelMove(name="p", label="l", version=5, previous=4)]
    assert rollback_target(only) == 4
