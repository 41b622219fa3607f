"""Control-plane and observability events: pools, prompts, experiments, metrics, failures."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import Contract, Event, Identifier, Name, UtcDatetime
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
    capacity: int = Field(ge=0)
    in_flight: int = Field(ge=0)
    queue_depth: int = Field(default=0, ge=0)
    tokens_per_s: float = Field(default=0.0, ge=0.0)
    requests_per_s: float = Field(default=0.0, ge=0.0)
    requests_total: int = Field(default=0, ge=0)
    errors_total: int = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_p50_ms: float = Field(default=0.0, ge=0.0)
    latency_p99_ms: float = Field(default=0.0, ge=0.0)
    cost_per_1k_tokens: float = Field(default=0.0, ge=0.0)
    cost_per_gpu_hour: float = Field(default=0.0, ge=0.0)
    healthy: bool = True


class PromptVersion(Event):
    """One immutable version of a named prompt (llm.prompts, compacted, key name:version)."""

    name: Name
    version: int = Field(ge=1)
    messages: list[ChatMessage] = Field(min_length=1)
    labels: list[Name] = Field(default_factory=list)
    model: Name | None = None
    description: str = Field(default="", max_length=4096)


class Variant(Contract):
    name: Name
    prompt_version: int | None = Field(default=None, ge=1)
    weight: float = Field(ge=0.0)


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

    window_start: UtcDatetime
    window_end: UtcDatetime
    prompt_name: str = ""
    prompt_version: int = 0
    variant: str = ""
    pool: str = ""
    model: str = ""
    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0.0)
    latency_p50_ms: float = Field(ge=0.0)
    latency_p95_ms: float = Field(ge=0.0)
    latency_p99_ms: float = Field(ge=0.0)
    ttft_p50_ms: float = Field(ge=0.0)
    ttft_p95_ms: float = Field(ge=0.0)
    output_chars_mean: float = Field(ge=0.0)
    finish_reasons: dict[str, int] = Field(default_factory=dict)


class DriftReport(Event):
    feature: Name
    segment: str = ""
    statistic: Name
    value: float
    p_value: float | None = None
    threshold: float
    drifted: bool
    reference_size: int = Field(ge=0)
    current_size: int = Field(ge=0)


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
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    key_b64: str | None = None
    payload_b64: str = Field(description="original bytes, base64 (truncated past the size limit)")
    payload_size: int = Field(ge=0)
    headers: dict[str, str] = Field(default_factory=dict)
    request_id: Identifier | None = None
    reply_to: str | None = None
