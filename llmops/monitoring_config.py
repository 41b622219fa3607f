"""What the quality monitor checks and when it alerts (Settings.monitoring). Data only.

Safety rules put a ceiling on a window's rate and test its jump against the reference;
drift compares each window's distributions with the reference each prompt chooses; fairness
compares each segment value with the best one. Every threshold is configurable; the
defaults follow Evidently (drift) and the four-fifths rule (fairness band 0.8-1.25).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

Severity = Literal["info", "warning", "critical"]
RuleName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SafetyRule(_Strict):
    """A ceiling on one rate of a window, and a jump test of it against the reference."""

    rate: RuleName  # a QualityWindow rate: "refusal", "pii_output", "toxic", "error", ...
    max_rate: float = Field(ge=0.0, le=1.0)
    # Responses a window (or segment) needs before its rate is judged at all.
    min_responses: int = Field(default=20, ge=1, le=10_000_000)
    # Two-proportion z test of the window against the reference: alert below this p-value
    # (after Benjamini-Hochberg across the window's tests). 0 turns the jump test off.
    jump_alpha: float = Field(default=0.01, ge=0.0, lt=1.0)
    severity: Severity = "warning"
    webhook: HttpUrl | None = None  # Slack-compatible JSON POSTed on open and resolve


def _default_safety_rules() -> list[SafetyRule]:
    return [
        SafetyRule(rate="pii_output", max_rate=0.01, severity="critical"),
        SafetyRule(rate="toxic", max_rate=0.02, severity="critical"),
        SafetyRule(rate="refusal", max_rate=0.10),
        SafetyRule(rate="unsupported", max_rate=0.20),
        SafetyRule(rate="json_invalid", max_rate=0.05),
        SafetyRule(rate="error", max_rate=0.05),
    ]


ReferenceMode = Literal["baseline", "rolling", "pinned"]


class ReferenceConfig(_Strict):
    """What a prompt's windows are compared with.

    baseline: the first `baseline_responses` responses of the same prompt version;
    rolling: the `rolling_windows` windows before the current one;
    pinned: the responses between `pinned_start` and `pinned_end`.
    """

    mode: ReferenceMode = "baseline"
    baseline_responses: int = Field(default=500, ge=10, le=1_000_000)
    rolling_windows: int = Field(default=10, ge=1, le=10_000)
    pinned_start: datetime | None = None
    pinned_end: datetime | None = None


class DriftConfig(_Strict):
    # Distributions (QualityWindow sketches/samples) and categories tested every window;
    # "embedding" tests the output embeddings (MMD of the windows' embedding samples with a
    # permutation p-value, and the centroid cosine distance; methods {"embedding": "cosine"}:
    # the centroids alone).
    features: list[RuleName] = Field(
        default_factory=lambda: [
            "latency_ms",
            "output_chars",
            "toxicity",
            "grounding",
            "finish_reason",
            "embedding",
        ],
        max_length=64,
    )
    # Per feature: the method and threshold to use instead of Evidently's default choice.
    methods: dict[RuleName, RuleName] = Field(default_factory=dict, max_length=64)
    thresholds: dict[RuleName, float] = Field(default_factory=dict, max_length=64)
    # False discovery rate of Benjamini-Hochberg across one window's tests.
    fdr: float = Field(default=0.05, gt=0.0, lt=1.0)
    # Consecutive drifted windows before an alert opens.
    persistence: int = Field(default=2, ge=1, le=1000)
    min_current: int = Field(default=30, ge=1, le=10_000_000)
    min_reference: int = Field(default=100, ge=1, le=10_000_000)
    severity: Severity = "warning"
    webhook: HttpUrl | None = None


class FairnessConfig(_Strict):
    # Figures compared across the values of each segment attribute.
    metrics: list[RuleName] = Field(
        default_factory=lambda: ["refusal", "safety_flag", "error", "latency_p95"],
        max_length=32,
    )
    band_low: float = Field(default=0.8, gt=0.0, le=1.0)
    band_high: float = Field(default=1.25, ge=1.0, le=1000.0)
    # Responses each compared group needs, and the interval level of the disparity ratio.
    min_group_responses: int = Field(default=30, ge=1, le=10_000_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    severity: Severity = "warning"
    webhook: HttpUrl | None = None


DEFAULT_CHECKS = ("drift", "safety", "fairness")


class MonitoringSettings(_Strict):
    enabled: bool = True
    # The window checks the monitor runs, by name (streams/monitors/: a driver per name).
    checks: list[RuleName] = Field(default_factory=lambda: list(DEFAULT_CHECKS), max_length=16)
    safety: list[SafetyRule] = Field(default_factory=_default_safety_rules, max_length=64)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)
    # The reference of every prompt, unless `references` names one for it.
    default_reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    references: dict[RuleName, ReferenceConfig] = Field(default_factory=dict, max_length=1024)
    # An output toxicity score at or above this counts the response as toxic.
    toxic_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # A response whose grounding share is below this counts as making unsupported claims.
    unsupported_below: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("checks")
    @classmethod
    def _each_check_once(cls, checks: list[str]) -> list[str]:
        repeated = sorted({c for c in checks if checks.count(c) > 1})
        if repeated:
            raise ValueError(f"checks named more than once: {', '.join(repeated)}")
        return checks

    def reference_for(self, prompt_name: str) -> ReferenceConfig:
        return self.references.get(prompt_name, self.default_reference)
