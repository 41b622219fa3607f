from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from llmops.evals.assertions import Result
from llmops.evals.scoring import (
    Scored,
    compare,
    pass_at_k,
    pass_hat_k,
    score_result,
    summarize,
)
from llmops.evals.suite import load_suite

SUITE = load_suite(
    """
name: s
prompt: p@production
threshold: 0.75
min_pass_rate: 0.5
cases:
  - id: a
    reference: "Paris"
    assertions:
      - {type: contains, value: "Paris", weight: 3}
      - {type: regex, pattern: "(?i)sorry", not: true}
  - id: b
    assertions:
      - {type: json_valid}
      - {type: latency, max: 100}
      - {type: signal, name: refusal, op: "==", value: 0}
      - {type: equals, value: '{}', not: true}
"""
)
A, B = SUITE.cases


def test_score_is_the_weighted_share_of_passing_checks() -> None:
    s = score_result(SUITE, A, Result("Paris, sorry"))
    assert s.score == pytest.approx(0.75) and s.passed  # at the threshold passes
    s = score_result(SUITE, A, Result("Lyon"))
    assert s.score == pytest.approx(0.25) and not s.passed
    assert [c.passed for c in s.checks] == [False, True]
    assert s.checks[1].type == "not regex"


def test_unmeasured_numbers_fail_their_check() -> None:
    s = score_result(SUITE, B, Result('{"a": 1}', signals={"refusal": 0.0}))
    assert [c.passed for c in s.checks] == [True, False, True, True]
    assert "not measured" in s.checks[1].message
    assert s.score == pytest.approx(0.75)


def test_an_error_scores_zero() -> None:
    s = score_result(SUITE, A, Result("Paris", error="timeout"), repeat=2)
    assert (s.score, s.passed, s.error, s.repeat, s.checks) == (0.0, False, "timeout", 2, ())


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def _brute_pass_hat_k(n: int, c: int, k: int) -> float:
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(combinations(outcomes, k))
    return sum(all(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_pass_at_k_and_pass_hat_k_match_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))
            assert pass_hat_k(n, c, k) == pytest.approx(_brute_pass_hat_k(n, c, k))


def test_pass_at_k_fixed_values() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    assert pass_hat_k(10, 3, 2) == pytest.approx(3 / 45)
    assert pass_at_k(200, 0, 100) == 0.0 and pass_hat_k(200, 200, 100) == 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_bad_counts_are_refused(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


def _scored(case: str, repeat: int, passed: bool, score: float | None = None) -> Scored:
    return Scored(case, repeat, score if score is not None else float(passed), passed, ())


def test_summary_names_flaky_cases_and_gives_the_verdict() -> None:
    results = [_scored("a", i, p) for i, p in enumerate([True, False, True])]
    results += [_scored("b", i, True) for i in range(3)]
    summary = summarize(SUITE, results)
    a, b = summary.cases
    assert (a.n, a.passes, a.flaky, a.passed) == (3, 2, True, False)
    assert a.pass_at_k == 1.0 and a.pass_hat_k == 0.0  # k = n = 3
    assert (b.flaky, b.passed, b.pass_hat_k) == (False, True, 1.0)
    assert summary.flaky == ("a",) and summary.failed == ("a",)
    assert summary.pass_rate == 0.5 and summary.passed  # min_pass_rate 0.5
    assert summary.mean_score == pytest.approx((2 / 3 + 1) / 2)
    k1 = summarize(SUITE, results, k=1).cases[0]
    assert k1.pass_at_k == pytest.approx(2 / 3) and k1.pass_hat_k == pytest.approx(2 / 3)


def test_summary_fails_below_min_pass_rate() -> None:
    summary = summarize(SUITE, [_scored("a", 0, False), _scored("b", 0, False)])
    assert not summary.passed and summary.flaky == ()


def test_summary_refuses_missing_or_unknown_cases() -> None:
    with pytest.raises(ValueError, match="'b' has no result"):
        summarize(SUITE, [_scored("a", 0, True)])
    with pytest.raises(ValueError, match="unknown case 'z'"):
        summarize(SUITE, [_scored("a", 0, True), _scored("b", 0, True), _scored("z", 0, True)])


def _pairs(a_pass: list[bool], b_pass: list[bool]) -> tuple[list[Scored], list[Scored]]:
    a = [_scored(f"c{i}", 0, p) for i, p in enumerate(a_pass)]
    b = [_scored(f"c{i}", 0, p) for i, p in enumerate(b_pass)]
    return a, b


def test_mcnemar_agrees_with_scipy_on_the_discordant_pairs() -> None:
    # 2 pass only with A, 10 only with B, 8 with both
    a_pass = [True] * 2 + [False] * 10 + [True] * 8
    b_pass = [False] * 2 + [True] * 10 + [True] * 8
    result = compare(*_pairs(a_pass, b_pass))
    assert (result.only_a_passes, result.only_b_passes, result.pairs) == (2, 10, 20)
    assert result.mcnemar_p == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue)
    assert result.mcnemar_p == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 2**12)
    assert result.mean_score_diff == pytest.approx(0.4)
    assert 0 < result.diff_low < 0.4 < result.diff_high
    assert result.verdict.startswith("B passes more cases than A")
    assert result.a_pass_rate == 0.5 and result.b_pass_rate == 0.9


def test_the_bootstrap_is_seeded_and_matches_a_direct_computation() -> None:
    a = [_scored(f"c{i}", 0, True, s) for i, s in enumerate([0.2, 0.5, 0.9, 0.4])]
    b = [_scored(f"c{i}", 0, True, s) for i, s in enumerate([0.3, 0.5, 0.7, 0.8])]
    r1 = compare(a, b, seed=7, resamples=500)
    r2 = compare(list(reversed(a)), b, seed=7, resamples=500)
    assert (r1.diff_low, r1.diff_high) == (r2.diff_low, r2.diff_high)
    diffs = np.array([0.1, 0.0, -0.2, 0.4])
    picks = np.random.default_rng(7).integers(0, 4, size=(500, 4))
    low, high = np.quantile(diffs[picks].mean(axis=1), [0.025, 0.975])
    assert (r1.diff_low, r1.diff_high) == pytest.approx((low, high))
    assert r1.mcnemar_p == 1.0  # no discordant pairs
    assert r1.verdict.startswith("no detectable difference")


def test_verdicts_in_each_direction() -> None:
    worse = compare(*_pairs([True] * 12, [False] * 12))
    assert worse.verdict.startswith("B passes fewer cases than A")
    a = [_scored(f"c{i}", 0, True, 0.8) for i in range(10)]
    b = [_scored(f"c{i}", 0, True, 0.9) for i in range(10)]
    assert compare(a, b).verdict.startswith("B scores higher than A")
    assert compare(b, a).verdict.startswith("B scores lower than A")


def test_repeats_pair_by_case_and_repeat() -> None:
    a = [_scored("x", r, True) for r in range(3)]
    b = [_scored("x", r, r != 1) for r in range(3)]
    result = compare(a, b)
    assert (result.pairs, result.only_a_passes, result.only_b_passes) == (3, 1, 0)


def test_unpaired_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="same cases"):
        compare(*_pairs([True], [True, False]))
    with pytest.raises(ValueError, match="twice"):
        compare([_scored("x", 0, True)] * 2, [_scored("x", 0, True)] * 2)
    with pytest.raises(ValueError, match="nothing"):
        compare([], [])
    with pytest.raises(ValueError, match="confidence"):
        compare(*_pairs([True], [True]), confidence=1.0)
