"""Control-plane and observability events: pools, prompts, experiments, metrics, failures."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import (
    MAX_INT32,
    MAX_OFFSET,
    MAX_PARTITION,
    MAX_PAYLOAD_BYTES,
    MAX_STATISTIC,
    MAX_TEXT_LEN,
    MAX_TOTAL_COST_USD,
    MAX_VERSION,
    MAX_WEIGHT,
    Contract,
    CostUsd,
    Count,
    Event,
    Fraction,
    Identifier,
    Millis,
    Name,
    RatePerS,
    StoredDatetime,
    Version,
    utc_now,
)
from schemas.requests import ChatMessage

PoolPhase = Literal["starting", "serving", "stopping"]


class PoolStatus(Event):
    """One pool instance's heartbeat on llm.pools.status (keyed by pool, about every second).

    A pool may run several instances (replicas of its consumer group); each beats on its own,
    and readers add them up. Rates and percentiles cover the instance's recent window; the
    totals are cumulative since the instance started, so a reader can take exact deltas.
    """

    pool: Name
    instance: Identifier | None = None
    phase: PoolPhase = "serving"
    provider: Name = "local"
    region: Name = "local"
    gpu: Name = "cpu"
    models: list[Name] = Field(default_factory=list)
    adapters: list[Name] = Field(default_factory=list)
    capacity: int = Field(ge=0, le=MAX_INT32)
    in_flight: Count
    queue_depth: Count = 0
    tokens_per_s: RatePerS = 0.0
    requests_per_s: RatePerS = 0.0
    requests_total: Count = 0
    errors_total: Count = 0
    error_rate: Fraction = 0.0
    latency_p50_ms: Millis = 0.0
    latency_p99_ms: Millis = 0.0
    cost_per_1k_tokens: CostUsd = 0.0
    cost_per_gpu_hour: CostUsd = 0.0
    healthy: bool = True


class PromptVersion(Event):
    """One immutable version of a named prompt (llm.prompts, compacted, key name:version)."""

    name: Name
    version: Version
    messages: list[ChatMessage] = Field(min_length=1)
    labels: list[Name] = Field(default_factory=list)
    model: Name | None = None
    description: str = Field(default="", max_length=4096)


class Variant(Contract):
    name: Name
    prompt_version: Version | None = None
    weight: float = Field(ge=0.0, le=MAX_WEIGHT, allow_inf_nan=False)


class Experiment(Event):
    """An A/B experiment over versions of one prompt (llm.experiments, compacted)."""

    name: Name
    prompt_name: Name
    variants: list[Variant] = Field(min_length=1)
    status: Literal["draft", "running", "stopped"] = "running"

    @model_validator(mode="after")
    def _weights(self) -> Experiment:
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("experiment variants need a positive total weight")
        if len({v.name for v in self.variants}) != len(self.variants):
            raise ValueError("variant names must be unique")
        return self


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


DeadLetterKind = Literal[
    "not_json",
    "schema_invalid",
    "oversized",
    "unroutable",
    "unknown_prompt",
    "missing_variable",
    "processing_error",
    "unstorable",  # valid, but the store cannot hold a value of it (found by the sink)
    "unsigned",  # a heartbeat or result without the deployment's signature
    "bad_signature",  # signed, but not validly under any accepted key
]


class DeadLetter(Event):
    """Input a consumer could not take, kept whole so it can be inspected and replayed."""

    kind: DeadLetterKind
    reason: str = Field(max_length=8192)
    service: Name
    source_topic: str
    source_partition: int = Field(ge=0, le=MAX_PARTITION)
    source_offset: int = Field(ge=0, le=MAX_OFFSET)
    key_b64: str | None = None
    payload_b64: str = Field(description="original bytes, base64 (truncated past the size limit)")
    payload_size: int = Field(ge=0, le=MAX_PAYLOAD_BYTES)
    headers: dict[str, str] = Field(default_factory=dict)
    request_id: Identifier | None = None
    reply_to: str | None = None
