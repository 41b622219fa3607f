"""Guardrail decisions: a harmful variant is stopped, nothing else is."""

from __future__ import annotations

from datetime import UTC, datetime

from llmops.experiments.events import VariantSpec, start
from llmops.experiments.guardrail import (
    DECISION_COLUMNS,
    GuardrailConfig,
    alert_for,
    apply,
    check,
    counts_from_rows,
    decision_row,
    rates_query,
    watched_pairs,
)

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _experiment(guardrails: tuple[str, ...] = ("refusal_rate", "error_rate")):  # type: ignore[no-untyped-def]
    variants = [
        VariantSpec("control", "p", 1, 40),
        VariantSpec("new", "p", 2, 30),
        VariantSpec("other", "p", 3, 30),
    ]
    return start("exp", "p", variants, NOW, guardrails=guardrails)


def _counts(refusals: dict[str, tuple[int, int]]) -> dict[str, dict[str, tuple[int, int]]]:
    return {v: {"refusal_rate": c, "error_rate": (0, c[1])} for v, c in refusals.items()}


def test_a_significantly_worse_variant_is_stopped_and_its_users_go_to_control() -> None:
    experiment = _experiment()
    counts = _counts({"control": (20, 1000), "new": (150, 1000), "other": (22, 1000)})
    decisions = check(experiment, counts)
    assert [(d.variant, d.metric) for d in decisions] == [("new", "refusal_rate")]
    decision = decisions[0]
    assert decision.p_value < decision.alpha == 0.05 / 4  # 2 treatments x 2 guardrails
    assert decision.cs_low > 0 and decision.revision == experiment.revision + 1
    stopped = apply(experiment, decisions, NOW)
    assert stopped.variant("new").stopped and stopped.variant("new").slot_count == 0
    assert stopped.variant("control").slot_count == 7000
    assert stopped.variant("other").slot_count == 3000
    assert stopped.revision == decision.revision
    # Stopped variants are no longer watched.
    assert ("new", "refusal_rate") not in watched_pairs(stopped)
    assert check(stopped, counts) == []


def test_no_stop_for_equal_better_or_too_few() -> None:
    experiment = _experiment()
    assert (
        check(experiment, _counts({"control": (50, 1000), "new": (55, 1000), "other": (45, 1000)}))
        == []
    )
    assert (
        check(
            experiment, _counts({"control": (150, 1000), "new": (10, 1000), "other": (150, 1000)})
        )
        == []
    )
    few = _counts({"control": (0, 50), "new": (40, 50), "other": (0, 50)})
    assert check(experiment, few) == []
    assert check(experiment, few, GuardrailConfig(min_per_arm=20)) != []
    assert (
        check(
            _experiment(guardrails=()),
            _counts({"control": (0, 1000), "new": (900, 1000), "other": (0, 1000)}),
        )
        == []
    )


def test_the_alert_and_the_decision_row_carry_the_evidence() -> None:
    experiment = _experiment()
    [decision] = check(
        experiment, _counts({"control": (20, 1000), "new": (150, 1000), "other": (20, 1000)})
    )
    alert = alert_for(decision, NOW)
    assert alert.severity == "critical" and alert.kind == "experiment"
    assert alert.rule == "guardrail_refusal_rate" and alert.variant == "new"
    assert alert.evidence["rate"] == "0.15" and alert.evidence["control_rate"] == "0.02"
    row = decision_row(decision, NOW)
    assert tuple(row) == DECISION_COLUMNS
    assert (
        row["decision_id"]
        == decision.decision_id
        == check(
            experiment, _counts({"control": (20, 1000), "new": (150, 1000), "other": (20, 1000)})
        )[0].decision_id
    )


def test_the_rates_query_reads_the_counts_back() -> None:
    sql = rates_query(["refusal_rate"])
    assert "n_refusal_rate" in sql and "h_refusal_rate" in sql and "{e:String}" in sql
    rows = [{"variant": "a", "n_refusal_rate": 10, "h_refusal_rate": 2}]
    assert counts_from_rows(rows, ["refusal_rate"]) == {"a": {"refusal_rate": (2, 10)}}
