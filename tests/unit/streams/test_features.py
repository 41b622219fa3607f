from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas import ErrorInfo, InferenceResult, Timings, Usage
from schemas.base import MAX_COST_USD, MAX_DURATION_MS, MAX_TOKENS, MAX_VERSION
from streams.features import ResponseFeatures, extract_features, group_key_text, is_error

TS = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def result(**overrides: object) -> InferenceResult:
    fields: dict[str, object] = {
        "request_id": "r1",
        "ts": TS,
        "text": "héllo wörld",
        "finish_reason": "stop",
        "usage": Usage(input_tokens=12, output_tokens=5),
        "timings": Timings(queue_ms=3.0, ttft_ms=40.0, tpot_ms=9.5, total_ms=81.0),
        "pool": "gpu-a",
        "model": "gemma",
        "prompt_name": "greet",
        "prompt_version": 3,
        "variant": "b",
        "cost_usd": 0.0125,
    }
    fields.update(overrides)
    return InferenceResult.model_validate(fields)


def test_features_of_a_successful_response() -> None:
    f = extract_features(result())
    assert f.request_id == "r1"
    assert f.ts == TS
    assert f.group == ("greet", 3, "b", "gpu-a", "gemma")
    assert not f.is_error
    assert f.error_kind == ""
    assert f.finish_reason == "stop"
    assert (f.input_tokens, f.output_tokens) == (12, 5)
    assert (f.latency_ms, f.ttft_ms, f.tpot_ms, f.queue_ms) == (81.0, 40.0, 9.5, 3.0)
    assert f.output_chars == len("héllo wörld") == 11  # characters, not bytes
    assert f.cost_usd == 0.0125


def test_missing_routing_fields_become_empty_group_parts() -> None:
    f = extract_features(
        result(pool=None, model=None, prompt_name=None, prompt_version=None, variant=None)
    )
    assert f.group == ("", 0, "", "", "")


def test_error_info_marks_an_error_and_its_kind() -> None:
    r = result(
        finish_reason="error",
        text="",
        error=ErrorInfo(kind="engine_error", message="boom"),
    )
    f = extract_features(r)
    assert is_error(r)
    assert f.is_error
    assert f.error_kind == "engine_error"
    assert f.output_chars == 0


def test_finish_reason_error_without_info_is_an_error() -> None:
    r = result(finish_reason="error")
    assert is_error(r)
    assert extract_features(r).error_kind == ""


@pytest.mark.parametrize("reason", ["stop", "length", "abort", "timeout"])
def test_other_finish_reasons_are_not_errors(reason: str) -> None:
    assert not is_error(result(finish_reason=reason))


def test_features_round_trip_through_bytes() -> None:
    f = extract_features(result())
    again = ResponseFeatures.from_bytes(f.to_bytes())
    assert again == f
    assert "text" not in again.model_dump()  # the response text never travels on


def test_features_reject_bad_bytes() -> None:
    with pytest.raises(ValidationError):
        ResponseFeatures.from_bytes(b"{not json")
    with pytest.raises(ValidationError):
        ResponseFeatures.from_bytes(b'{"request_id": "x"}')


# Found by the consumer fuzz test: each made the window of its record unbuildable.
@pytest.mark.parametrize(
    "hostile",
    [
        {"prompt_version": 24321736945397720},
        {"cost_usd": 1.26e308},
        {"output_chars": 3 * 10**20},
        {"input_tokens": 2**40},
        {"latency_ms": 1e300},
        {"finish_reason": "\u2026"},
        {"error_kind": "not a kind"},
        {"pool": "x" * 129},
        {"model": "a b"},
    ],
)
def test_features_outside_their_contracts_bounds_are_rejected(hostile: dict[str, object]) -> None:
    doc = {**extract_features(result()).model_dump(mode="json"), **hostile}
    with pytest.raises(ValidationError):
        ResponseFeatures.model_validate(doc)


def test_features_at_their_contracts_bounds_are_valid() -> None:
    top = result(
        usage=Usage(input_tokens=MAX_TOKENS, output_tokens=MAX_TOKENS),
        timings=Timings(queue_ms=MAX_DURATION_MS, total_ms=MAX_DURATION_MS),
        cost_usd=MAX_COST_USD,
        prompt_version=MAX_VERSION,
    )
    again = ResponseFeatures.from_bytes(extract_features(top).to_bytes())
    assert (again.cost_usd, again.prompt_version) == (MAX_COST_USD, MAX_VERSION)


def test_group_key_text_is_stable_and_distinct() -> None:
    assert group_key_text(("p", 2, "a", "pool", "m")) == "p|2|a|pool|m"
    assert group_key_text(("p", 2, "a", "pool", "m")) != group_key_text(("p", 2, "b", "pool", "m"))
