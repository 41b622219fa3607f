"""Schema objects -> ClickHouse rows (dicts keyed by column name). Pure, no IO.

Column names follow the pydantic field names, with nested objects flattened (usage.*,
timings.*, error.*, sampling.*, prompt.* -> input_tokens, ..., error_kind, error_message,
max_tokens, prompt_name, ...). The column tuples are, in order, the columns of
infra/clickhouse/002_requests.sql ... 005_dead_letters.sql that the worker fills (all but
`inserted_at`, the tables' version, filled by ClickHouse); a unit test holds them together.
Optional text becomes "" (the tables have no Nullable text); booleans go to UInt8.
Text a user or a model wrote goes through a TextPolicy (streams/privacy.py, Settings.store_text)
as its row is built; the requests table holds no such text (messages are only counted).
A response's detector signals (streams/detectors/) fill the columns of
009_response_signals.sql: values and "detector@version" by signal name, findings as spans only.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from schemas import DeadLetter, InferenceResult, MetricWindow, PromptRequest, QualityWindow
from schemas.monitoring import MAX_EMBEDDING_DIM, Alert, DriftReport
from streams.detectors.base import Signal
from streams.features import EMBEDDING_SIGNAL, ResponseFeatures
from streams.privacy import RAW, TextPolicy

Row = dict[str, Any]

REQUESTS_TABLE = "requests"
RESPONSES_TABLE = "responses"
METRIC_WINDOWS_TABLE = "metric_windows"
QUALITY_WINDOWS_TABLE = "quality_windows"
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
    "stream",
    "max_tokens",
    "temperature",
    "top_p",
    "message_count",
    "input_chars",
    "has_context",
    "reply_to",
    "deadline",
    "attributes",
    "payload_size",
)

RESPONSE_COLUMNS: tuple[str, ...] = (
    "request_id",
    "event_id",
    "ts",
    "tenant",
    "app",
    "pool",
    "model",
    "engine",
    "prompt_name",
    "prompt_version",
    "experiment",
    "variant",
    "route_reason",
    "finish_reason",
    "error_kind",
    "error_message",
    "input_tokens",
    "output_tokens",
    "queue_ms",
    "ttft_ms",
    "tpot_ms",
    "total_ms",
    "output_chars",
    "chunks",
    "cost_usd",
    "has_context",
    "text",
    "attributes",
    "payload_size",
)

# Added by 009_response_signals.sql, after the table's own columns.
SIGNAL_COLUMNS: tuple[str, ...] = (
    "signals",
    "signal_detectors",
    "finding_signal",
    "finding_kind",
    "finding_where",
    "finding_start",
    "finding_end",
)
RESPONSE_COLUMNS += SIGNAL_COLUMNS
# Added by 012_response_embedding.sql: the output embedding (the embedding tier's signal
# "embedding"), as float32; empty when the response has none.
EMBEDDING_COLUMNS: tuple[str, ...] = ("embedding",)
RESPONSE_COLUMNS += EMBEDDING_COLUMNS

# Findings kept per response row: a text full of entities must not make a row unbounded
# (the signals' values still count them all).
MAX_FINDINGS_PER_ROW = 256
# UInt32 columns: offsets beyond are clamped (texts are far shorter; this only bounds).
_MAX_OFFSET = 2**32 - 1

# The leading columns of every per-window table (metric_windows, quality_windows, drift):
# the window and its group, in the order of their sorting keys.
WINDOW_GROUP_COLUMNS: tuple[str, ...] = (
    "window_start",
    "window_end",
    "prompt_name",
    "prompt_version",
    "variant",
    "pool",
    "model",
)

METRIC_WINDOW_COLUMNS: tuple[str, ...] = (
    *WINDOW_GROUP_COLUMNS,
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

# 010_quality_windows.sql: the QualityWindow fields, named alike.
QUALITY_WINDOW_COLUMNS: tuple[str, ...] = (
    *WINDOW_GROUP_COLUMNS,
    "segment",
    "event_id",
    "ts",
    "responses",
    "errors",
    "rate_totals",
    "rate_hits",
    "rate_low",
    "rate_high",
    "quantiles",
    "sketches",
    "sample",
    "sample_hashes",
    "categories",
    "embedding_sum",
    "embedded",
    # Added by 015_embedding_sample.sql.
    "embedding_sample",
    "embedding_sample_hashes",
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
    "request_id",
    "reply_to",
    "payload_size",
    "payload_b64",
    "key_b64",
    "headers",
)


def _text(value: str | None) -> str:
    return value or ""


def request_row(request: PromptRequest, payload_size: int) -> Row:
    """`input_chars`: characters the app sent as input, message contents or, for a prompt
    reference, its variables' values (the rendered prompt exists only after routing)."""
    prompt = request.prompt
    messages = request.messages or []
    if prompt is not None:
        input_chars = sum(len(v) for v in prompt.variables.values())
    else:
        input_chars = sum(len(m.content) for m in messages)
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
        "stream": request.stream,
        "max_tokens": request.sampling.max_tokens,
        "temperature": request.sampling.temperature,
        "top_p": request.sampling.top_p,
        "message_count": len(messages),
        "input_chars": input_chars,
        "has_context": request.context is not None,
        "reply_to": _text(request.reply_to),
        "deadline": request.deadline,
        "attributes": dict(request.attributes),
        "payload_size": payload_size,
    }


def _offset(value: int) -> int:
    return min(max(value, 0), _MAX_OFFSET)


def signal_columns(signals: Sequence[Signal]) -> Row:
    """The signal columns of one response. A signal name seen twice keeps its first value
    (the first detector configured wins); a value that is not finite is left out, with its
    findings, since no filter could use it. The matched text is never stored: spans only."""
    values: dict[str, float] = {}
    detectors: dict[str, str] = {}
    findings: Row = {column: [] for column in SIGNAL_COLUMNS[2:]}
    kept = 0
    for signal in signals:
        if signal.name in values or not math.isfinite(signal.value):
            continue
        values[signal.name] = float(signal.value)
        detectors[signal.name] = f"{signal.detector}@{signal.version}"
        for finding in signal.findings:
            if kept >= MAX_FINDINGS_PER_ROW:
                break
            kept += 1
            findings["finding_signal"].append(signal.name)
            findings["finding_kind"].append(finding.kind)
            findings["finding_where"].append(finding.where)
            findings["finding_start"].append(_offset(finding.start))
            findings["finding_end"].append(_offset(finding.end))
    return {
        "signals": values,
        "signal_detectors": detectors,
        **findings,
        "embedding": embedding_column(signals),
    }


def embedding_column(signals: Sequence[Signal]) -> list[float]:
    """The vector of the first signal named "embedding" that has one, rounded to float32
    (the column's type) and cut to MAX_EMBEDDING_DIM; empty when there is none or any of its
    values is not finite as a float32."""
    for signal in signals:
        if signal.name == EMBEDDING_SIGNAL and signal.vector:
            vector = array("f", signal.vector[:MAX_EMBEDDING_DIM]).tolist()
            return vector if all(math.isfinite(v) for v in vector) else []
    return []


def response_row(
    result: InferenceResult,
    features: ResponseFeatures,
    payload_size: int,
    policy: TextPolicy = RAW,
    signals: Sequence[Signal] = (),
) -> Row:
    return {
        "request_id": result.request_id,
        "event_id": result.event_id,
        "ts": result.ts,
        "tenant": result.tenant,
        "app": result.app,
        "pool": features.pool,
        "model": features.model,
        "engine": _text(result.engine),
        "prompt_name": features.prompt_name,
        "prompt_version": features.prompt_version,
        "experiment": _text(result.experiment),
        "variant": features.variant,
        "route_reason": _text(result.route_reason),
        "finish_reason": result.finish_reason,
        "error_kind": features.error_kind,
        "error_message": result.error.message if result.error is not None else "",
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "queue_ms": result.timings.queue_ms,
        "ttft_ms": result.timings.ttft_ms,
        "tpot_ms": result.timings.tpot_ms,
        "total_ms": result.timings.total_ms,
        "output_chars": features.output_chars,
        "chunks": result.chunks,
        "cost_usd": result.cost_usd,
        "has_context": result.context is not None,
        "text": policy.text(result.text),
        "attributes": dict(result.attributes),
        "payload_size": payload_size,
        **signal_columns(signals),
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


def quality_window_row(window: QualityWindow) -> Row:
    return {column: getattr(window, column) for column in QUALITY_WINDOW_COLUMNS}


def dead_letter_row(letter: DeadLetter, policy: TextPolicy = RAW) -> Row:
    return {
        "event_id": letter.event_id,
        "ts": letter.ts,
        "kind": letter.kind,
        "reason": letter.reason,
        "service": letter.service,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "request_id": _text(letter.request_id),
        "reply_to": _text(letter.reply_to),
        "payload_size": letter.payload_size,
        "payload_b64": policy.raw_bytes_b64(letter.payload_b64),
        "key_b64": policy.raw_bytes_b64(_text(letter.key_b64)),
        "headers": policy.header_values(letter.headers),
    }


# The monitor's outputs (011_drift_alerts.sql): drift results and alerts.
DRIFT_TABLE = "drift"
ALERTS_TABLE = "alerts"
# A DriftReport or Alert without a window: the epoch (sorting keys take no NULL).
_NO_WINDOW = datetime(1970, 1, 1, tzinfo=UTC)

DRIFT_COLUMNS: tuple[str, ...] = (
    *WINDOW_GROUP_COLUMNS,
    "segment",
    "feature",
    "statistic",
    "event_id",
    "ts",
    "value",
    "p_value",
    "p_adjusted",
    "threshold",
    "drifted",
    "streak",
    "reference",
    "reference_size",
    "current_size",
)

ALERT_COLUMNS: tuple[str, ...] = (
    "alert_id",
    "event_id",
    "ts",
    "severity",
    "kind",
    "rule",
    "subject",
    "state",
    "opened_at",
    "message",
    "prompt_name",
    "prompt_version",
    "variant",
    "pool",
    "model",
    "segment",
    "window_start",
    "window_end",
    "evidence",
    "request_id",
)


def drift_row(report: DriftReport) -> Row:
    row: Row = {column: getattr(report, column) for column in DRIFT_COLUMNS}
    row["window_start"] = report.window_start or _NO_WINDOW
    row["window_end"] = report.window_end or _NO_WINDOW
    return row


def alert_row(alert: Alert) -> Row:
    row: Row = {column: getattr(alert, column) for column in ALERT_COLUMNS}
    row["evidence"] = dict(alert.evidence)
    row["request_id"] = _text(alert.request_id)
    return row
