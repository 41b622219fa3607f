from __future__ import annotations

from llmops.monitoring_config import SafetyRule
from streams.monitoring.reference import merge_reference
from streams.monitoring.safety import safety_conditions
from tests.unit.streams.monitoring.kit import window

RULE = SafetyRule(rate="refusal", max_rate=0.10, min_responses=20, jump_alpha=0.01)


def test_a_rate_above_its_ceiling_is_active_and_one_below_clears() -> None:
    above = safety_conditions([(window(1, rates={"refusal": (12, 100)}), None)], [RULE])
    below = safety_conditions([(window(1, rates={"refusal": (10, 100)}), None)], [RULE])
    assert [(c.rule, c.active) for c in above] == [("refusal_rate", True)]
    assert [(c.rule, c.active) for c in below] == [("refusal_rate", False)]
    assert above[0].evidence["value"] == "0.12" and above[0].evidence["threshold"] == "0.1"


def test_too_few_responses_are_not_judged() -> None:
    assert safety_conditions([(window(1, rates={"refusal": (10, 19)}), None)], [RULE]) == []
    assert safety_conditions([(window(1), None)], [RULE]) == []  # the rate is absent


def test_a_jump_against_the_reference_is_active_below_the_ceiling() -> None:
    rule = SafetyRule(rate="refusal", max_rate=0.5, jump_alpha=0.01)
    reference = merge_reference([window(0, rates={"refusal": (50, 1000)})], "baseline:x")
    jumped = safety_conditions([(window(1, rates={"refusal": (30, 200)}), reference)], [rule])
    steady = safety_conditions([(window(1, rates={"refusal": (11, 200)}), reference)], [rule])
    fell = safety_conditions([(window(1, rates={"refusal": (0, 200)}), reference)], [rule])
    assert [(c.rule, c.active) for c in jumped] == [("refusal_rate", False), ("refusal_jump", True)]
    assert [c.active for c in steady] == [False, False]
    assert [c.active for c in fell] == [False, False]  # a fall is no safety problem
    assert jumped[1].evidence["reference"] == "baseline:x"


def test_jump_p_values_are_adjusted_across_the_window() -> None:
    rule = SafetyRule(rate="refusal", max_rate=0.5, jump_alpha=0.01)
    reference = merge_reference([window(0, rates={"refusal": (50, 1000)})], "b")
    # p ~ 0.006 alone: active; with 9 quiet segments beside it, the adjusted p is ~0.06.
    borderline = window(1, rates={"refusal": (19, 200)})
    alone = safety_conditions([(borderline, reference)], [rule])
    quiet = [
        (window(1, segment=f"s={i}", rates={"refusal": (10, 200)}), reference) for i in range(9)
    ]
    crowded = safety_conditions([(borderline, reference), *quiet], [rule])
    jump = next(c for c in alone if c.rule == "refusal_jump")
    assert jump.active and float(jump.evidence["p_value"]) < 0.01
    crowded_jump = next(c for c in crowded if c.rule == "refusal_jump" and c.segment == "")
    assert not crowded_jump.active
    assert float(crowded_jump.evidence["p_adjusted"]) > float(crowded_jump.evidence["p_value"])


def test_a_jump_with_too_few_expected_hits_is_not_judged() -> None:
    rule = SafetyRule(rate="error", max_rate=0.5, jump_alpha=0.01)
    reference = merge_reference([window(0, rates={"error": (5, 500)})], "b")
    # 5 of 150 against 1%: z says p ~ 0.01, but 1.5 hits were expected (< 5): not judged.
    rare = safety_conditions([(window(1, rates={"error": (5, 150)}), reference)], [rule])
    assert [c.rule for c in rare] == ["error_rate"]
