"""Every number on the wire has bounds that the engines and the ClickHouse columns can hold,
and the exported JSON Schema carries them, so outside clients see them too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import (
    DeadLetter,
    DriftReport,
    Event,
    Experiment,
    InferenceResult,
    MetricWindow,
    PoolStatus,
    PromptRequest,
    PromptVersion,
    ResponseChunk,
    RoutedRequest,
)
from schemas.base import MAX_INT32, MAX_STORED_TIME, MAX_TIME, MAX_UINT32, MIN_TIME
from schemas.export import render_all

HUGE = 2**70
MESSAGES = [{"role": "user", "content": "hi"}]
RESULT: dict[str, Any] = {"request_id": "r", "finish_reason": "stop"}
WINDOW: dict[str, Any] = {
    "window_start": "2026-01-01T00:00:00Z",
    "window_end": "2026-01-01T00:01:00Z",
    **{f: 0 for f in ("requests", "errors", "input_tokens", "output_tokens", "cost_usd")},
    **{f"{m}_p{p}_ms": 0.0 for m in ("latency", "ttft") for p in (50, 95)},
    "latency_p99_ms": 0.0,
    "output_chars_mean": 0.0,
}
POOL: dict[str, Any] = {"pool": "p", "capacity": 1, "in_flight": 0}
LETTER: dict[str, Any] = {
    "kind": "not_json",
    "reason": "x",
    "service": "s",
    "source_topic": "t",
    "source_partition": 0,
    "source_offset": 0,
    "payload_b64": "",
    "payload_size": 0,
}
ROUTED: dict[str, Any] = {
    "request": {"messages": MESSAGES},
    "messages": MESSAGES,
    "pool": "p",
    "model": "m",
    "route_reason": "r",
    "routed_at": "2026-01-01T00:00:00Z",
}
DRIFT: dict[str, Any] = {
    "feature": "f",
    "statistic": "psi",
    "value": 0.1,
    "threshold": 0.2,
    "drifted": False,
    "reference_size": 1,
    "current_size": 1,
}


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(base))
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return doc


# (contract, valid document, field path, a value outside what engines or columns hold)
OUT_OF_RANGE: list[tuple[type[Event], dict[str, Any], str, Any]] = [
    (PromptRequest, {"messages": MESSAGES}, "sampling.top_k", 2**31),  # int32 overflow in torch
    (PromptRequest, {"messages": MESSAGES}, "sampling.seed", 2**64),
    (PromptRequest, {"messages": MESSAGES}, "sampling.stop", ["x" * 257]),
    (PromptRequest, {"prompt": {"name": "p"}}, "prompt.version", MAX_UINT32 + 1),
    (PromptRequest, {"messages": MESSAGES}, "schema_version", HUGE),
    (PromptRequest, {"messages": MESSAGES}, "deadline", "2300-01-01T00:00:00Z"),
    (RoutedRequest, ROUTED, "prompt_version", HUGE),
    (InferenceResult, RESULT, "usage.input_tokens", HUGE),
    (InferenceResult, RESULT, "usage.output_tokens", MAX_INT32 + 1),
    (InferenceResult, RESULT, "timings.total_ms", 1e300),
    (InferenceResult, RESULT, "chunks", HUGE),
    (InferenceResult, RESULT, "cost_usd", 1e300),
    (InferenceResult, RESULT, "prompt_version", 0),
    (InferenceResult, RESULT, "ts", "1899-12-31T23:59:59Z"),
    (ResponseChunk, {"request_id": "r", "seq": 0, "text": "x"}, "seq", HUGE),
    (PoolStatus, POOL, "capacity", HUGE),
    (PoolStatus, POOL, "requests_total", HUGE),
    (PoolStatus, POOL, "tokens_per_s", 1e300),
    (PoolStatus, POOL, "cost_per_1k_tokens", 1e300),
    (PromptVersion, {"name": "p", "version": 1, "messages": MESSAGES}, "version", HUGE),
    (MetricWindow, WINDOW, "requests", HUGE),
    (MetricWindow, WINDOW, "finish_reasons", {"stop": HUGE}),
    (MetricWindow, WINDOW, "prompt_version", HUGE),
    (MetricWindow, WINDOW, "window_end", "2300-01-01T00:00:00Z"),
    (DriftReport, DRIFT, "value", 1e300),
    (DriftReport, DRIFT, "p_value", 1.5),
    (DriftReport, DRIFT, "current_size", HUGE),
    (DeadLetter, LETTER, "source_partition", 2**31),
    (DeadLetter, LETTER, "source_offset", HUGE),
    (DeadLetter, LETTER, "payload_size", 2**31),
]


@pytest.mark.parametrize(
    ("contract", "doc", "path", "value"),
    OUT_OF_RANGE,
    ids=[f"{c.__name__}.{p}" for c, _, p, _ in OUT_OF_RANGE],
)
def test_out_of_range_numbers_are_refused(
    contract: type[Event], doc: dict[str, Any], path: str, value: Any
) -> None:
    contract.model_validate_json(json.dumps(doc))  # the base document is valid
    with pytest.raises(ValidationError):
        contract.model_validate_json(json.dumps(_with(doc, path, value)))


# Non-finite floats reach pydantic's JSON parser as literals (NaN, Infinity) or as overflow.
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(
    ("contract", "doc", "path"),
    [
        (PromptRequest, {"messages": MESSAGES}, "sampling.temperature"),
        (PromptRequest, {"messages": MESSAGES}, "sampling.top_p"),
        (InferenceResult, RESULT, "cost_usd"),
        (InferenceResult, RESULT, "timings.queue_ms"),
        (PoolStatus, POOL, "latency_p99_ms"),
        (PoolStatus, POOL, "error_rate"),
        (MetricWindow, WINDOW, "cost_usd"),
        (MetricWindow, WINDOW, "output_chars_mean"),
        (DriftReport, DRIFT, "threshold"),
    ],
)
def test_non_finite_floats_are_refused(
    contract: type[Event], doc: dict[str, Any], path: str, literal: str
) -> None:
    marker = "__number__"
    text = json.dumps(_with(doc, path, marker)).replace(f'"{marker}"', literal)
    with pytest.raises(ValidationError):
        contract.model_validate_json(text)


def test_variant_weights_are_finite() -> None:
    variants = [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]
    doc = {"name": "e", "prompt_name": "p", "variants": variants}
    Experiment.model_validate(doc)
    for bad in ("Infinity", "1e300"):
        text = json.dumps(doc).replace('"weight": 1}]', f'"weight": {bad}}}]')
        with pytest.raises(ValidationError):
            Experiment.model_validate_json(text)


def test_the_largest_values_are_taken() -> None:
    request = PromptRequest.model_validate(
        {"messages": MESSAGES, "sampling": {"top_k": MAX_INT32, "seed": 2**63 - 1}}
    )
    assert request.sampling.top_k == MAX_INT32
    usage = {"input_tokens": MAX_INT32, "output_tokens": MAX_INT32}
    result = InferenceResult.model_validate({**RESULT, "usage": usage})
    assert result.usage.total_tokens == 2**32 - 2


def test_times_are_bounded_to_what_datetime64_holds() -> None:
    assert PromptRequest(messages=MESSAGES, ts=MIN_TIME).ts == MIN_TIME  # type: ignore[arg-type]
    assert PromptRequest(messages=MESSAGES, ts=MAX_TIME).ts == MAX_TIME  # type: ignore[arg-type]
    for outside in (MIN_TIME - timedelta(seconds=1), MAX_TIME + timedelta(seconds=1)):
        with pytest.raises(ValidationError):
            PromptRequest(messages=MESSAGES, ts=outside)  # type: ignore[arg-type]
    # A window derived from the latest event time still fits its columns.
    end = MAX_TIME + timedelta(hours=1)
    window = MetricWindow.model_validate({**WINDOW, "window_end": end, "ts": end})
    assert window.window_end <= MAX_STORED_TIME


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1000-01-01T00:00:00Z"]
)
def test_times_outside_the_calendar_are_validation_errors(text: str) -> None:
    # Converting these to UTC overflows: an OverflowError would escape every consumer's
    # validation handling; it must be a plain ValidationError.
    with pytest.raises(ValidationError):
        InferenceResult.model_validate_json(json.dumps({**RESULT, "ts": text}))
    aware = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert InferenceResult.model_validate({**RESULT, "ts": aware}).ts == datetime(
        2026, 1, 1, 5, tzinfo=UTC
    )


def _property(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema
    for key in path:
        node = node["properties"][key]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in node:
            node = next(n for n in node["anyOf"] if n.get("type") != "null")
            if "$ref" in node:
                node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_the_json_schema_carries_the_bounds() -> None:
    schemas = {name: json.loads(text) for name, text in render_all().items()}
    request = schemas["PromptRequest.json"]
    assert _property(request, "sampling", "top_k") == {
        "maximum": MAX_INT32,
        "minimum": 1,
        "type": "integer",
    }
    assert _property(request, "sampling", "seed")["maximum"] == 2**63 - 1
    assert _property(request, "deadline")["formatMaximum"] == "2299-12-31T00:00:00.000Z"
    assert _property(request, "ts")["formatMinimum"] == "1900-01-02T00:00:00.000Z"
    result = schemas["InferenceResult.json"]
    assert _property(result, "usage", "input_tokens")["maximum"] == MAX_INT32
    assert _property(result, "cost_usd")["maximum"] == 1e12
    letter = schemas["DeadLetter.json"]
    assert _property(letter, "source_offset")["maximum"] == 2**63 - 1
    assert _property(letter, "payload_size")["maximum"] == MAX_INT32
    window = schemas["MetricWindow.json"]
    assert _property(window, "prompt_version")["maximum"] == MAX_UINT32
    # Every number in every contract has both bounds.
    for name, schema in schemas.items():
        for path, node in _numbers(schema):
            assert "minimum" in node or "exclusiveMinimum" in node, f"{name}: {path}"
            assert "maximum" in node, f"{name}: {path}"


def _numbers(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            found.append((path, node))
        for key, child in node.items():
            found += _numbers(child, f"{path}.{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _numbers(child, f"{path}[{i}]")
    return found
