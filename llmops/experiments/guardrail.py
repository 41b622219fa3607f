"""Guardrails: stop a variant whose guardrail rate is significantly worse than control's. Pure.

The test is the report's always-valid one (the mSPRT for two proportions,
llmops.stats.sequential): the guardrail looks at every tick, so a fixed-horizon test would
stop harmless variants far more often than its level says. Only "worse" stops (the treatment's
rate above control's); the level is split over every (variant, metric) pair watched
(Bonferroni), so an experiment with many guardrails is not stopped more often by chance.
A variant needs `min_per_arm` checked responses in both arms before it can be judged: the
plug-in variance of a handful of responses is not worth a decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from llmops.experiments.events import stop_variant
from llmops.experiments.metrics import GUARDRAILS
from llmops.stats.sequential import SequentialState, msprt_proportions
from schemas import Alert, Experiment

if TYPE_CHECKING:
    from llmops.config import Settings

ALPHA = 0.05
TAU = 0.02  # the smallest rise worth stopping for: 2 points (absolute)
MIN_PER_ARM = 100

Counts = Mapping[str, Mapping[str, tuple[int, int]]]  # variant -> metric -> (hits, checked)


@dataclass(frozen=True)
class GuardrailConfig:
    alpha: float = ALPHA
    tau: float = TAU
    min_per_arm: int = MIN_PER_ARM

    @classmethod
    def from_settings(cls, settings: Settings) -> GuardrailConfig:
        return cls(
            alpha=settings.guardrail_alpha,
            tau=settings.guardrail_tau,
            min_per_arm=settings.guardrail_min_per_arm,
        )


@dataclass(frozen=True)
class Decision:
    """A variant stopped, and why."""

    experiment: str
    prompt_name: str
    revision: int  # the state the decision creates
    variant: str
    control: str
    metric: str
    control_hits: int
    control_n: int
    treatment_hits: int
    treatment_n: int
    difference: float
    cs_low: float
    cs_high: float
    p_value: float
    alpha: float
    tau: float

    @property
    def decision_id(self) -> str:
        text = f"{self.experiment}\x00{self.variant}\x00{self.metric}\x00{self.revision}"
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    @property
    def message(self) -> str:
        c = self.control_hits / self.control_n
        t = self.treatment_hits / self.treatment_n
        return (
            f"experiment {self.experiment}: variant {self.variant} stopped, {self.metric} "
            f"{t:.1%} vs {c:.1%} in {self.control} ({self.treatment_hits}/{self.treatment_n} "
            f"vs {self.control_hits}/{self.control_n}), always-valid p = {self.p_value:.2g} "
            f"< {self.alpha:.2g}; its users went back to {self.control}"
        )


def watched_pairs(experiment: Experiment) -> list[tuple[str, str]]:
    """(variant, metric) pairs the guardrails watch: live treatments x guardrail metrics."""
    control = experiment.control_name
    return [
        (v.name, metric)
        for v in experiment.variants
        if v.name != control and not v.stopped
        for metric in experiment.guardrails
        if metric in GUARDRAILS
    ]


def check(
    experiment: Experiment, counts: Counts, config: GuardrailConfig = GuardrailConfig()
) -> list[Decision]:
    """The variants to stop now: for each, its most significant harmful metric."""
    if experiment.status != "running":
        return []
    pairs = watched_pairs(experiment)
    if not pairs:
        return []
    level = config.alpha / len(pairs)
    control = experiment.control_name
    worst: dict[str, Decision] = {}
    for variant, metric in pairs:
        hc, nc = counts.get(control, {}).get(metric, (0, 0))
        ht, nt = counts.get(variant, {}).get(metric, (0, 0))
        if min(nc, nt) < config.min_per_arm:
            continue
        state = msprt_proportions(SequentialState(), hc, nc, ht, nt, config.tau, level)
        if not (state.difference > 0 and state.p_value < level and state.low > 0):
            continue
        decision = Decision(
            experiment.name,
            experiment.prompt_name,
            experiment.revision + 1,
            variant,
            control,
            metric,
            hc,
            nc,
            ht,
            nt,
            state.difference,
            state.low,
            state.high,
            state.p_value,
            level,
            config.tau,
        )
        if variant not in worst or decision.p_value < worst[variant].p_value:
            worst[variant] = decision
    return list(worst.values())


def apply(experiment: Experiment, decisions: list[Decision], now: datetime) -> Experiment:
    """The experiment with every decided variant stopped (their users back to control)."""
    for decision in decisions:
        experiment = stop_variant(experiment, decision.variant, now, decision.message)
    return experiment


def alert_for(decision: Decision, now: datetime) -> Alert:
    subject = f"experiment {decision.experiment} variant {decision.variant}"
    return Alert(
        severity="critical",
        kind="experiment",
        rule=f"guardrail_{decision.metric}",
        subject=subject,
        alert_id=decision.decision_id,
        opened_at=now,
        ts=now,
        message=decision.message,
        prompt_name=decision.prompt_name,
        variant=decision.variant,
        evidence={
            "experiment": decision.experiment,
            "metric": decision.metric,
            "control": decision.control,
            "control_rate": f"{decision.control_hits / decision.control_n:.6g}",
            "rate": f"{decision.treatment_hits / decision.treatment_n:.6g}",
            "control_n": str(decision.control_n),
            "responses": str(decision.treatment_n),
            "difference": f"{decision.difference:.6g}",
            "cs_low": f"{decision.cs_low:.6g}",
            "always_valid_p": f"{decision.p_value:.3g}",
            "alpha": f"{decision.alpha:.3g}",
        },
    )


def decision_row(decision: Decision, now: datetime) -> dict[str, object]:
    return {
        "decision_id": decision.decision_id,
        "ts": now,
        "experiment": decision.experiment,
        "prompt_name": decision.prompt_name,
        "revision": decision.revision,
        "action": "stop_variant",
        "variant": decision.variant,
        "control": decision.control,
        "metric": decision.metric,
        "control_hits": decision.control_hits,
        "control_n": decision.control_n,
        "treatment_hits": decision.treatment_hits,
        "treatment_n": decision.treatment_n,
        "difference": decision.difference,
        "cs_low": decision.cs_low,
        "cs_high": decision.cs_high,
        "p_value": decision.p_value,
        "alpha": decision.alpha,
        "tau": decision.tau,
        "message": decision.message,
    }


DECISION_COLUMNS = tuple(
    decision_row(
        Decision("e", "p", 1, "v", "c", "m", 0, 1, 0, 1, 0.0, 0.0, 0.0, 1.0, 0.05, 0.02),
        datetime(2026, 1, 1),
    )
)


def rates_query(metrics: Sequence[str]) -> str:
    """Per variant, each guardrail metric's checked and harmful responses since the start."""
    parts = ["variant"]
    for name in metrics:
        m = GUARDRAILS[name]
        parts.append(f"countIf({m.checked}) AS n_{m.name}")
        parts.append(f"countIf(({m.checked}) AND ({m.hit})) AS h_{m.name}")
    return (
        f"SELECT {', '.join(parts)} FROM responses FINAL "
        "WHERE experiment = {e:String} AND variant != '' AND ts >= {since:DateTime64(3)} "
        "GROUP BY variant LIMIT 64"
    )


def counts_from_rows(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> dict[str, dict[str, tuple[int, int]]]:
    return {
        str(row["variant"]): {m: (int(row[f"h_{m}"]), int(row[f"n_{m}"])) for m in metrics}
        for row in rows
    }
