"""Schema objects -> ClickHouse rows (dicts keyed by column name). Pure, no IO.

Column names follow the pydantic field names, with nested objects flattened (usage.*,
timings.*, error.* -> input_tokens, ..., error_kind, error_message). The column tuples below
are exactly the columns of infra/clickhouse/00{2,3,4,5}_*.sql that the worker fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import DeadLetter, InferenceResult, MetricWindow, PromptRequest
from streams.features import ResponseFeatures

Row = dict[str, Any]

REQUESTS_TABLE = "requests"
RESPONSES_TABLE = "responses"
METRIC_WINDOWS_TABLE = "metric_windows"
DEAD_LETTERS_TABLE = "dead_letters"

REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id",
    "event_id",
    "ts",
    "tenant",
    "app",
    "user_id",
    "session_id",
    "prompt_name",
    "prompt_label",
    "prompt_version",
    "model",
    "adapter",
    "max_tokens",
    "temperature",
    "top_p",
    "stream",
    "reply_to",
    "deadline",
    "attributes",
    "has_context",
    "message_count",
    "input_chars",
    "payload_size",
)

RESPONSE_COLUMNS: tuple[str, ...] = (
    "request_id",
    "event_id",
    "ts",
    "tenant",
    "app",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "queue_ms",
    "ttft_ms",
    "tpot_ms",
    "total_ms",
    "chunks",
    "pool",
    "model",
    "engine",
    "prompt_name",
    "prompt_version",
    "experiment",
    "variant",
    "route_reason",
    "attributes",
    "cost_usd",
    "error_kind",
    "error_message",
    "output_chars",
    "has_context",
    "text",
    "payload_size",
)

METRIC_WINDOW_COLUMNS: tuple[str, ...] = (
    "window_start",
    "window_end",
    "prompt_name",
    "prompt_version",
    "variant",
    "pool",
    "model",
    "event_id",
    "ts",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "output_chars_mean",
    "finish_reasons",
)

DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "event_id",
    "ts",
    "kind",
    "reason",
    "service",
    "source_topic",
    "source_partition",
    "source_offset",
    "key_b64",
    "payload_b64",
    "payload_size",
    "headers",
    "request_id",
    "reply_to",
)


def _text(value: str | None) -> str:
    return value or ""


def request_row(request: PromptRequest, payload_size: int) -> Row:
    prompt = request.prompt
    messages = request.messages or []
    return {
        "request_id": request.request_id,
        "event_id": request.event_id,
        "ts": request.ts,
        "tenant": request.tenant,
        "app": request.app,
        "user_id": _text(request.user_id),
        "session_id": _text(request.session_id),
        "prompt_name": prompt.name if prompt else "",
        "prompt_label": _text(prompt.label) if prompt else "",
        "prompt_version": (prompt.version or 0) if prompt else 0,
        "model": _text(request.model),
        "adapter": _text(request.adapter),
        "max_tokens": request.sampling.max_tokens,
        "temperature": request.sampling.temperature,
        "top_p": request.sampling.top_p,
        "stream": request.stream,
        "reply_to": _text(request.reply_to),
        "deadline": request.deadline,
        "attributes": dict(request.attributes),
        "has_context": request.context is not None,
        "message_count": len(messages),
        "input_chars": sum(len(m.content) for m in messages)
        + (sum(len(v) for v in prompt.variables.values()) if prompt else 0),
        "payload_size": payload_size,
    }


def response_row(result: InferenceResult, features: ResponseFeatures, payload_size: int) -> Row:
    return {
        "request_id": result.request_id,
        "event_id": result.event_id,
        "ts": result.ts,
        "tenant": result.tenant,
        "app": result.app,
        "finish_reason": result.finish_reason,
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "queue_ms": result.timings.queue_ms,
        "ttft_ms": result.timings.ttft_ms,
        "tpot_ms": result.timings.tpot_ms,
        "total_ms": result.timings.total_ms,
        "chunks": result.chunks,
        "pool": features.pool,
        "model": features.model,
        "engine": _text(result.engine),
        "prompt_name": features.prompt_name,
        "prompt_version": features.prompt_version,
        "experiment": _text(result.experiment),
        "variant": features.variant,
        "route_reason": _text(result.route_reason),
        "attributes": dict(result.attributes),
        "cost_usd": result.cost_usd,
        "error_kind": features.error_kind,
        "error_message": result.error.message if result.error is not None else "",
        "output_chars": features.output_chars,
        "has_context": result.context is not None,
        "text": result.text,
        "payload_size": payload_size,
    }


def metric_window_row(window: MetricWindow) -> Row:
    return {
        "window_start": window.window_start,
        "window_end": window.window_end,
        "prompt_name": window.prompt_name,
        "prompt_version": window.prompt_version,
        "variant": window.variant,
        "pool": window.pool,
        "model": window.model,
        "event_id": window.event_id,
        "ts": window.ts,
        "requests": window.requests,
        "errors": window.errors,
        "input_tokens": window.input_tokens,
        "output_tokens": window.output_tokens,
        "cost_usd": window.cost_usd,
        "latency_p50_ms": window.latency_p50_ms,
        "latency_p95_ms": window.latency_p95_ms,
        "latency_p99_ms": window.latency_p99_ms,
        "ttft_p50_ms": window.ttft_p50_ms,
        "ttft_p95_ms": window.ttft_p95_ms,
        "output_chars_mean": window.output_chars_mean,
        "finish_reasons": dict(window.finish_reasons),
    }


def dead_letter_row(letter: DeadLetter) -> Row:
    return {
        "event_id": letter.event_id,
        "ts": letter.ts,
        "kind": letter.kind,
        "reason": letter.reason,
        "service": letter.service,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "key_b64": _text(letter.key_b64),
        "payload_b64": letter.payload_b64,
        "payload_size": letter.payload_size,
        "headers": dict(letter.headers),
        "request_id": _text(letter.request_id),
        "reply_to": _text(letter.reply_to),
    }


def check_columns(row: Mapping[str, Any], columns: tuple[str, ...]) -> None:
    """Fail loudly if a mapping and its column list drift apart."""
    if tuple(row) != columns:
        raise ValueError(f"row keys {tuple(row)} differ from columns {columns}")
