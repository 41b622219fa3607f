"""From judged results to verdicts: a case's score, pass@k and pass^k across repeats, flaky
cases, the suite's verdict, and the paired comparison of two prompt versions.

- A result's score is the weighted share of its passing assertions; it passes at or above the
  suite's threshold. A result with an error scores 0.
- Across n repeats with c passing: pass@k = 1 - C(n-c, k) / C(n, k) (the unbiased estimator,
  Chen et al. 2021: some of k samples passes), pass^k = C(c, k) / C(n, k) (all k pass). A case
  is flaky when some but not all of its repeats pass. A case passes only when every repeat
  passes (a release gate), and the suite passes when at least `min_pass_rate` of cases pass.
- Two versions on the same cases: McNemar's exact test on the discordant pass/fail pairs
  (scipy.stats.binomtest) and a seeded paired bootstrap interval of the mean score difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from llmops.evals.assertions import Check, Result, Subject, judge
from llmops.evals.suite import Case, Suite


@dataclass(frozen=True, slots=True)
class Scored:
    """One result of one case, judged."""

    case_id: str
    repeat: int
    score: float
    passed: bool
    checks: tuple[Check, ...]
    error: str | None = None
    latency_ms: float | None = None


def score_checks(checks: Sequence[Check]) -> float:
    """The weighted share of passing checks (1.0 for none)."""
    total = math.fsum(c.weight for c in checks)
    if total <= 0:
        return 1.0
    return math.fsum(c.weight for c in checks if c.passed) / total


def score_result(
    suite: Suite,
    case: Case,
    result: Result,
    repeat: int = 0,
    response_schema: Mapping[str, Any] | None = None,
) -> Scored:
    """Judge one result of one case against its assertions and the suite's threshold;
    `response_schema`: that of the prompt version that answered, for `json_schema`."""
    if result.error is not None:
        return Scored(case.id, repeat, 0.0, False, (), result.error[:500], result.latency_ms)
    subject = Subject(result, case.reference, response_schema)
    checks = tuple(
        judge(spec.build(), spec.negate, spec.weight, subject) for spec in suite.assertions_of(case)
    )
    score = score_checks(checks)
    # a float tolerance, so 0.8 from 4 of 5 equal weights reaches a threshold of 0.8
    passed = score >= suite.threshold - 1e-9
    return Scored(case.id, repeat, score, passed, checks, None, result.latency_ms)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate that at least one of k samples passes, from n with c passing."""
    _check_counts(n, c, k)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate that all of k samples pass (pass^k), from n with c passing."""
    _check_counts(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _check_counts(n: int, c: int, k: int) -> None:
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n and 0 <= c <= n (n={n}, c={c}, k={k})")


@dataclass(frozen=True, slots=True)
class CaseSummary:
    case_id: str
    n: int
    passes: int
    mean_score: float
    pass_at_k: float
    pass_hat_k: float
    flaky: bool
    passed: bool  # every repeat passed


@dataclass(frozen=True, slots=True)
class SuiteSummary:
    suite: str
    k: int
    cases: tuple[CaseSummary, ...]
    passed_cases: int
    pass_rate: float
    mean_score: float
    passed: bool

    @property
    def flaky(self) -> tuple[str, ...]:
        return tuple(c.case_id for c in self.cases if c.flaky)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.case_id for c in self.cases if not c.passed)


def summarize(suite: Suite, scored: Sequence[Scored], k: int | None = None) -> SuiteSummary:
    """Per case pass@k, pass^k and flakiness (k defaults to the repeats each case has), and
    the suite's verdict. Every case of the suite must have at least one result."""
    by_case: dict[str, list[Scored]] = {case.id: [] for case in suite.cases}
    for s in scored:
        if s.case_id not in by_case:
            raise ValueError(f"result for unknown case {s.case_id!r}")
        by_case[s.case_id].append(s)
    summaries = []
    for case_id, results in by_case.items():
        n = len(results)
        if n == 0:
            raise ValueError(f"case {case_id!r} has no result")
        kk = n if k is None else min(k, n)
        c = sum(r.passed for r in results)
        summaries.append(
            CaseSummary(
                case_id,
                n,
                c,
                math.fsum(r.score for r in results) / n,
                pass_at_k(n, c, kk),
                pass_hat_k(n, c, kk),
                0 < c < n,
                c == n,
            )
        )
    passed_cases = sum(s.passed for s in summaries)
    rate = passed_cases / len(summaries)
    return SuiteSummary(
        suite.name,
        k if k is not None else max(s.n for s in summaries),
        tuple(summaries),
        passed_cases,
        rate,
        math.fsum(s.mean_score for s in summaries) / len(summaries),
        rate >= suite.min_pass_rate - 1e-9,
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """Version B against version A on the same (case, repeat) pairs."""

    pairs: int
    a_pass_rate: float
    b_pass_rate: float
    only_a_passes: int  # discordant pairs
    only_b_passes: int
    mcnemar_p: float
    mean_score_diff: float  # B - A
    diff_low: float  # the bootstrap interval of the mean score difference
    diff_high: float
    confidence: float
    verdict: str


def compare(
    a: Sequence[Scored],
    b: Sequence[Scored],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Comparison:
    """Paired comparison of B with A: results are paired by (case, repeat) and must match."""
    if not 0 < confidence < 1 or not 0 < alpha < 1 or resamples < 1:
        raise ValueError("need 0 < confidence < 1, 0 < alpha < 1 and resamples >= 1")
    index_a = {(s.case_id, s.repeat): s for s in a}
    index_b = {(s.case_id, s.repeat): s for s in b}
    if len(index_a) != len(a) or len(index_b) != len(b):
        raise ValueError("a (case, repeat) appears twice")
    if index_a.keys() != index_b.keys():
        raise ValueError("the two versions were not run on the same cases and repeats")
    if not index_a:
        raise ValueError("nothing to compare")
    keys = sorted(index_a)
    pass_a = np.array([index_a[key].passed for key in keys], dtype=bool)
    pass_b = np.array([index_b[key].passed for key in keys], dtype=bool)
    diffs = np.array([index_b[key].score - index_a[key].score for key in keys], dtype=float)
    only_a = int(np.sum(pass_a & ~pass_b))
    only_b = int(np.sum(pass_b & ~pass_a))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(stats.binomtest(only_b, discordant, 0.5).pvalue)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(keys), size=(resamples, len(keys)))
    means = diffs[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = (float(x) for x in np.quantile(means, [tail, 1 - tail]))
    mean = float(diffs.mean())
    comparison = Comparison(
        len(keys),
        float(pass_a.mean()),
        float(pass_b.mean()),
        only_a,
        only_b,
        p,
        mean,
        low,
        high,
        confidence,
        "",
    )
    return _with_verdict(comparison, alpha)


def _with_verdict(c: Comparison, alpha: float) -> Comparison:
    interval = f"mean score difference {c.mean_score_diff:+.3f}, {c.confidence:.0%} interval "
    interval += f"[{c.diff_low:+.3f}, {c.diff_high:+.3f}]"
    flips = f"{c.only_b_passes} results pass only with B, {c.only_a_passes} only with A"
    if c.mcnemar_p < alpha and c.only_b_passes > c.only_a_passes:
        head = f"B passes more cases than A (McNemar p={c.mcnemar_p:.3g})"
    elif c.mcnemar_p < alpha:
        head = f"B passes fewer cases than A (McNemar p={c.mcnemar_p:.3g})"
    elif c.diff_low > 0:
        head = (
            f"B scores higher than A, pass/fail not significantly different (p={c.mcnemar_p:.3g})"
        )
    elif c.diff_high < 0:
        head = f"B scores lower than A, pass/fail not significantly different (p={c.mcnemar_p:.3g})"
    else:
        head = f"no detectable difference between A and B (McNemar p={c.mcnemar_p:.3g})"
    return Comparison(
        c.pairs,
        c.a_pass_rate,
        c.b_pass_rate,
        c.only_a_passes,
        c.only_b_passes,
        c.mcnemar_p,
        c.mean_score_diff,
        c.diff_low,
        c.diff_high,
        c.confidence,
        f"{head}; {flips}; {interval}",
    )
