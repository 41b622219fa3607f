"""What the metrics worker emits: window aggregates, drift reports and alerts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.base import (
    MAX_ATTRIBUTE_LEN,
    MAX_ID_LEN,
    MAX_INT64,
    MAX_NAME_LEN,
    MAX_STATISTIC,
    MAX_TEXT_LEN,
    MAX_TOTAL_COST_USD,
    MAX_UINT32,
    MAX_VERSION,
    Count,
    Event,
    Fraction,
    Identifier,
    Millis,
    Name,
    StoredDatetime,
    utc_now,
)


class MetricWindow(Event):
    """Aggregates of one tumbling window for one (prompt, version, variant, pool, model)."""

    # The window's bounds and its ts (= its end) derive from event times: the column's range.
    ts: StoredDatetime = Field(default_factory=utc_now)
    window_start: StoredDatetime
    window_end: StoredDatetime
    prompt_name: str = ""
    prompt_version: int = Field(default=0, ge=0, le=MAX_VERSION)  # 0: no prompt
    variant: str = ""
    pool: str = ""
    model: str = ""
    requests: Count
    errors: Count
    input_tokens: Count
    output_tokens: Count
    cost_usd: float = Field(ge=0.0, le=MAX_TOTAL_COST_USD, allow_inf_nan=False)
    latency_p50_ms: Millis
    latency_p95_ms: Millis
    latency_p99_ms: Millis
    ttft_p50_ms: Millis
    ttft_p95_ms: Millis
    output_chars_mean: float = Field(ge=0.0, le=MAX_TEXT_LEN, allow_inf_nan=False)
    finish_reasons: dict[str, Count] = Field(default_factory=dict)


# Quality monitoring (issue 9): signals and segment values are names, bounded in number.
MAX_SIGNALS = 128  # distinct signal names per response or window
MAX_SEGMENTS = 16  # declared segment attributes per response
MAX_SKETCH_BYTES = 65_536  # one serialized KLL sketch, base64
MAX_SAMPLE = 512  # values kept per feature in a window's sample
MAX_EMBEDDING_DIM = 4096
MAX_EMBEDDING_SAMPLE = 32  # output embeddings kept per window (bottom-k by request-id hash)
MAX_EVIDENCE = 32  # evidence entries on one alert

SignalValue = Annotated[float, Field(ge=-MAX_STATISTIC, le=MAX_STATISTIC, allow_inf_nan=False)]
SegmentValue = Annotated[str, Field(max_length=MAX_ATTRIBUTE_LEN)]
Statistic = Annotated[float, Field(ge=-MAX_STATISTIC, le=MAX_STATISTIC, allow_inf_nan=False)]
SampleHash = Annotated[int, Field(ge=0, le=MAX_INT64)]


class QualityWindow(Event):
    """Quality aggregates of one tumbling window, for one group and one segment.

    One per (window, prompt, version, variant, pool, model, segment): `segment` "" is the whole
    group, "locale=de" the responses whose request carried attributes["locale"] == "de".
    Everything here merges exactly across windows, pools or segments: rates as hits/totals
    (the Wilson interval is derived), distributions as KLL sketches (base64, Apache
    DataSketches kll_floats_sketch), the embedding centroid as sum/count, samples as the
    bottom-k request-id hashes (a bottom-k of a union is the bottom-k of the parts' bottom-k).
    """

    ts: StoredDatetime = Field(default_factory=utc_now)
    window_start: StoredDatetime
    window_end: StoredDatetime
    prompt_name: str = ""
    prompt_version: int = Field(default=0, ge=0, le=MAX_VERSION)
    variant: str = ""
    pool: str = ""
    model: str = ""
    segment: str = Field(default="", max_length=MAX_NAME_LEN + 1 + MAX_ATTRIBUTE_LEN)
    responses: Count
    errors: Count
    # Rate name ("refusal", "pii_output", "pii_output.EMAIL", "toxic", "unsupported",
    # "json_invalid", "error") -> responses it applies to and responses it flagged.
    rate_totals: dict[Name, Count] = Field(default_factory=dict, max_length=MAX_SIGNALS)
    rate_hits: dict[Name, Count] = Field(default_factory=dict, max_length=MAX_SIGNALS)
    # Wilson 95% interval of each rate (derived from hits/totals, kept for readers).
    rate_low: dict[Name, Fraction] = Field(default_factory=dict, max_length=MAX_SIGNALS)
    rate_high: dict[Name, Fraction] = Field(default_factory=dict, max_length=MAX_SIGNALS)
    # Distribution name ("latency_ms", "ttft_ms", "output_chars", "toxicity", "grounding",
    # ...) -> [p50, p90, p95, p99] read from its sketch, and the sketch itself.
    quantiles: dict[Name, list[Statistic]] = Field(default_factory=dict, max_length=MAX_SIGNALS)
    sketches: dict[Name, Annotated[str, Field(max_length=MAX_SKETCH_BYTES)]] = Field(
        default_factory=dict, max_length=MAX_SIGNALS
    )
    # Distribution name -> a uniform sample of its values (bottom-k by request-id hash).
    sample: dict[Name, Annotated[list[Statistic], Field(max_length=MAX_SAMPLE)]] = Field(
        default_factory=dict, max_length=MAX_SIGNALS
    )
    # The request-id hash (63-bit, streams.sketches.stable_hash) of each sampled value,
    # parallel to `sample`, ascending: what merges two samples into the bottom-k of the union.
    sample_hashes: dict[Name, Annotated[list[SampleHash], Field(max_length=MAX_SAMPLE)]] = Field(
        default_factory=dict, max_length=MAX_SIGNALS
    )
    # Categorical features ("finish_reason", "error_kind") -> value -> count.
    categories: dict[Name, dict[str, Count]] = Field(default_factory=dict, max_length=MAX_SIGNALS)
    # Embedding tier: the sum of the output embeddings, and how many were summed.
    embedding_sum: list[Statistic] = Field(default_factory=list, max_length=MAX_EMBEDDING_DIM)
    embedded: Count = 0
    # A uniform sample of the output embeddings (float32 values), the bottom-k by request-id
    # hash like `sample`, and their hashes (parallel, ascending): what the MMD drift test reads.
    embedding_sample: list[Annotated[list[Statistic], Field(max_length=MAX_EMBEDDING_DIM)]] = Field(
        default_factory=list, max_length=MAX_EMBEDDING_SAMPLE
    )
    embedding_sample_hashes: list[SampleHash] = Field(
        default_factory=list, max_length=MAX_EMBEDDING_SAMPLE
    )

    @model_validator(mode="after")
    def _parallel_embedding_sample(self) -> QualityWindow:
        if len(self.embedding_sample) != len(self.embedding_sample_hashes):
            raise ValueError("embedding_sample and embedding_sample_hashes must be parallel")
        if len({len(vector) for vector in self.embedding_sample}) > 1:
            raise ValueError("embedding_sample vectors must share one dimension")
        return self


class DriftReport(Event):
    """One drift test of one feature in one window (and segment) against its reference."""

    window_start: StoredDatetime | None = None
    window_end: StoredDatetime | None = None
    prompt_name: str = ""
    prompt_version: int = Field(default=0, ge=0, le=MAX_VERSION)
    variant: str = ""
    pool: str = ""
    model: str = ""
    feature: Name
    segment: str = Field(default="", max_length=MAX_NAME_LEN + 1 + MAX_ATTRIBUTE_LEN)
    statistic: Name
    value: Statistic
    p_value: Fraction | None = None
    # Benjamini-Hochberg adjusted p-value across the window's tests (None: no p-value).
    p_adjusted: Fraction | None = None
    threshold: Statistic
    drifted: bool
    # Consecutive windows drifted, this one included (an alert needs `persistence` of them).
    streak: int = Field(default=0, ge=0, le=MAX_UINT32)
    reference: str = Field(default="", max_length=512)  # e.g. "baseline:first 500 of v3"
    reference_size: Count
    current_size: Count


AlertState = Literal["open", "resolved"]


class Alert(Event):
    """A rule crossing for one subject. One open alert per subject: `alert_id` is stable per
    (rule, subject) and opening, so the row of a resolution replaces the row of its opening."""

    severity: Literal["info", "warning", "critical"]
    kind: Name  # "drift", "safety", "fairness"
    rule: Name = "manual"  # e.g. "refusal_rate", "pii_output_jump", "fairness_refusal"
    subject: str = Field(max_length=512)
    state: AlertState = "open"
    alert_id: str = Field(default="", max_length=MAX_ID_LEN)
    opened_at: StoredDatetime | None = None
    message: str = Field(max_length=4096)
    prompt_name: str = ""
    prompt_version: int = Field(default=0, ge=0, le=MAX_VERSION)
    variant: str = ""
    pool: str = ""
    model: str = ""
    segment: str = Field(default="", max_length=MAX_NAME_LEN + 1 + MAX_ATTRIBUTE_LEN)
    window_start: StoredDatetime | None = None
    window_end: StoredDatetime | None = None
    # statistic, value, threshold, reference, ...: what a human needs to judge it.
    evidence: dict[Name, Annotated[str, Field(max_length=512)]] = Field(
        default_factory=dict, max_length=MAX_EVIDENCE
    )
    request_id: Identifier | None = None
