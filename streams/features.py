"""Per-response features: the numbers every metric is built from. Pure, no IO.

A `ResponseFeatures` is also the record of the worker's internal repartition topic (keyed by
its window group), so it carries only small fields: never the response text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from schemas import Contract, InferenceResult
from schemas.base import (
    MAX_ATTRIBUTE_LEN,
    MAX_STATISTIC,
    MAX_TEXT_LEN,
    MAX_VERSION,
    CostUsd,
    Identifier,
    Millis,
    Name,
    TokenCount,
    UtcDatetime,
)
from schemas.monitoring import (
    MAX_EMBEDDING_DIM,
    MAX_SEGMENTS,
    MAX_SIGNALS,
    SegmentValue,
    SignalValue,
)
from schemas.responses import ErrorKind, FinishReason
from streams.detectors.base import Signal

# The signal whose vector is the output embedding (the embedding tier's detectors).
EMBEDDING_SIGNAL = "embedding"
_SIGNAL_NAME = re.compile(r"[A-Za-z0-9_.:/\-]{1,128}")

# (prompt_name, prompt_version, variant, pool, model): one window aggregate per group.
GroupKey = tuple[str, int, str, str, str]


class ResponseFeatures(Contract):
    """What the window aggregates need from one InferenceResult.

    Each field has the bounds of the InferenceResult field it comes from ("" for an absent
    name, 0 for no prompt version): a record on the topic outside them is no response's
    features, and one value past a MetricWindow bound would make its window unbuildable.
    """

    request_id: Identifier
    ts: UtcDatetime
    prompt_name: Name | Literal[""] = ""
    prompt_version: int = Field(default=0, ge=0, le=MAX_VERSION)
    variant: Name | Literal[""] = ""
    pool: Name | Literal[""] = ""
    model: Name | Literal[""] = ""
    is_error: bool = False
    error_kind: ErrorKind | Literal[""] = ""
    finish_reason: FinishReason
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    latency_ms: Millis = 0.0
    ttft_ms: Millis = 0.0
    tpot_ms: Millis = 0.0
    queue_ms: Millis = 0.0
    output_chars: int = Field(default=0, ge=0, le=MAX_TEXT_LEN)  # len(text)
    cost_usd: CostUsd = 0.0
    # The detectors' signals ("refusal", "pii_output.EMAIL", "toxicity", ...), filled once
    # the batch's detectors ran (streams/agents/sinks.py finish_responses).
    signals: dict[Name, SignalValue] = Field(default_factory=dict, max_length=MAX_SIGNALS)
    # The request's declared segment attributes (Settings.segment_attributes) it carried.
    segments: dict[Name, SegmentValue] = Field(default_factory=dict, max_length=MAX_SEGMENTS)
    # The output embedding, when the embedding tier ran on this response.
    embedding: list[SignalValue] | None = Field(default=None, max_length=MAX_EMBEDDING_DIM)

    @property
    def group(self) -> GroupKey:
        return (self.prompt_name, self.prompt_version, self.variant, self.pool, self.model)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ResponseFeatures:
        return cls.model_validate_json(data)


# Members of one packed record at most (a sink batch of one group packs into a few records).
MAX_PACKED_FEATURES = 1024


class ResponseFeaturesBatch(Contract):
    """Several responses' features of one window group in one repartition record (event
    type "ResponseFeaturesBatch"): what a sink batch publishes per group, so the windows
    agent pays the broker and faust's per-record cost once per group and batch, not once per
    response. A member outside the ResponseFeatures contract makes the whole record invalid.
    """

    features: list[ResponseFeatures] = Field(min_length=1, max_length=MAX_PACKED_FEATURES)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ResponseFeaturesBatch:
        return cls.model_validate_json(data)


def is_error(result: InferenceResult) -> bool:
    """An error is a result carrying ErrorInfo, or one that finished with reason `error`."""
    return result.error is not None or result.finish_reason == "error"


def segment_values(result: InferenceResult, declared: Sequence[str]) -> dict[str, str]:
    """The declared segment attributes the response's request carried (values as sent)."""
    return {
        name: result.attributes[name][:MAX_ATTRIBUTE_LEN]
        for name in declared
        if name in result.attributes
    }


def extract_features(
    result: InferenceResult, segment_attributes: Sequence[str] = ()
) -> ResponseFeatures:
    return ResponseFeatures(
        request_id=result.request_id,
        ts=result.ts,
        prompt_name=result.prompt_name or "",
        prompt_version=result.prompt_version or 0,
        variant=result.variant or "",
        pool=result.pool or "",
        model=result.model or "",
        is_error=is_error(result),
        error_kind=result.error.kind if result.error is not None else "",
        finish_reason=result.finish_reason,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        latency_ms=result.timings.total_ms,
        ttft_ms=result.timings.ttft_ms,
        tpot_ms=result.timings.tpot_ms,
        queue_ms=result.timings.queue_ms,
        output_chars=len(result.text),
        cost_usd=result.cost_usd,
        segments=segment_values(result, segment_attributes),
    )


def group_key_text(group: GroupKey) -> str:
    """The group as a Kafka key: the same group always lands on the same partition."""
    name, version, variant, pool, model = group
    return f"{name}|{version}|{variant}|{pool}|{model}"


def features_with_signals(
    features: ResponseFeatures, signals: Sequence[Signal]
) -> ResponseFeatures:
    """The features with the detectors' signals: the first value of each name (as the row
    keeps it), finite ones only, clamped to the contract's bound; the first vector of a
    signal named "embedding" as the output embedding."""
    values: dict[str, float] = {}
    embedding: list[float] | None = None
    for signal in signals:
        if signal.name == EMBEDDING_SIGNAL and embedding is None and signal.vector:
            embedding = [_clamp(v) for v in signal.vector[:MAX_EMBEDDING_DIM]]
        if signal.name in values or not math.isfinite(signal.value) or len(values) >= MAX_SIGNALS:
            continue
        if _SIGNAL_NAME.fullmatch(signal.name) is None:
            continue
        values[signal.name] = _clamp(signal.value)
    return features.model_copy(update={"signals": values, "embedding": embedding})


def _clamp(value: float) -> float:
    if not math.isfinite(value):
        return 0.0
    return max(-MAX_STATISTIC, min(MAX_STATISTIC, float(value)))
