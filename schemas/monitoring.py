"""What the metrics worker emits: window aggregates, drift reports and alerts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import (
    MAX_STATISTIC,
    MAX_TEXT_LEN,
    MAX_TOTAL_COST_USD,
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


class DriftReport(Event):
    feature: Name
    segment: str = ""
    statistic: Name
    value: float = Field(ge=-MAX_STATISTIC, le=MAX_STATISTIC, allow_inf_nan=False)
    p_value: Fraction | None = None
    threshold: float = Field(ge=-MAX_STATISTIC, le=MAX_STATISTIC, allow_inf_nan=False)
    drifted: bool
    reference_size: Count
    current_size: Count


class Alert(Event):
    severity: Literal["info", "warning", "critical"]
    kind: Name
    subject: str = Field(max_length=512)
    message: str = Field(max_length=4096)
    request_id: Identifier | None = None
