"""What an experiment measures, each metric as ClickHouse expressions over `responses`. Pure.

Kinds decide the test (llmops.experiments.analysis): a `rate` is hits over checked responses
(two proportions), a `mean` a per-response number (Welch from sums and sums of squares), a
`skewed` one (latency) adds a rank test on a bounded sample (Mann-Whitney) and its p50/p95,
a `ratio` a per-unit sum over per-unit requests (the delta method: a user's requests are not
independent). `better` says which direction is good; `tau` is the mSPRT's mixing scale: for
rates an absolute difference, for the others a fraction of the control's standard deviation
(rates: the smallest change worth detecting, fixed before any data, llmops.stats.sequential).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["rate", "mean", "skewed", "ratio"]
Better = Literal["lower", "higher", "none"]

OK = "error_kind = ''"
TOXIC_THRESHOLD = 0.5


@dataclass(frozen=True)
class Metric:
    name: str
    kind: MetricKind
    better: Better
    label: str
    # rate: which responses count (checked) and which are hits; others: the value and the
    # responses it is taken over.
    hit: str = "0"
    checked: str = "1"
    value: str = "0"
    tau: float = 0.02
    guardrail: bool = False


RATES: tuple[Metric, ...] = (
    Metric("error_rate", "rate", "lower", "error rate", hit="error_kind != ''", guardrail=True),
    Metric(
        "refusal_rate",
        "rate",
        "lower",
        "refusal rate",
        hit="signals['refusal'] > 0",
        checked="mapContains(signals, 'refusal')",
        guardrail=True,
    ),
    Metric(
        "pii_rate",
        "rate",
        "lower",
        "PII in answers",
        hit="signals['pii_output'] > 0",
        checked="mapContains(signals, 'pii_output')",
        guardrail=True,
    ),
    Metric(
        "toxic_rate",
        "rate",
        "lower",
        "toxic answers",
        hit=f"signals['toxicity'] >= {TOXIC_THRESHOLD}",
        checked="mapContains(signals, 'toxicity')",
        guardrail=True,
    ),
    Metric(
        "safety_flag_rate",
        "rate",
        "lower",
        "any safety flag",
        hit=f"signals['pii_output'] > 0 OR signals['toxicity'] >= {TOXIC_THRESHOLD}"
        " OR signals['refusal'] > 0",
        checked="mapContains(signals, 'pii_output') OR mapContains(signals, 'toxicity')"
        " OR mapContains(signals, 'refusal')",
        guardrail=True,
    ),
)

CONTINUOUS: tuple[Metric, ...] = (
    Metric("latency_ms", "skewed", "lower", "latency (ms)", value="total_ms", checked=OK, tau=0.1),
    Metric(
        "ttft_ms",
        "skewed",
        "lower",
        "time to first token (ms)",
        value="ttft_ms",
        checked=OK,
        tau=0.1,
    ),
    Metric(
        "output_tokens", "mean", "none", "output tokens", value="output_tokens", checked=OK, tau=0.1
    ),
)

COST = Metric(
    "cost_per_request", "ratio", "lower", "cost per request ($)", value="cost_usd", tau=0.1
)
FEEDBACK_SCORE = Metric("feedback_score", "mean", "higher", "feedback score", tau=0.1)
THUMBS_UP = Metric("thumbs_up_rate", "rate", "higher", "thumbs up", tau=0.05)


def judge_metric(check: str) -> Metric:
    """A model-graded check's mean score (1..5) on the variant's responses."""
    return Metric(f"eval_{check}_score", "mean", "higher", f"eval {check} score", tau=0.1)


GUARDRAILS: dict[str, Metric] = {m.name: m for m in RATES if m.guardrail}
