"""Schema objects -> rows, held against the migrations' column lists (no database)."""

from __future__ import annotations

import math
import re
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llmops.clickhouse.client import MIGRATIONS_DIR, split_statements
from schemas import (
    ChatMessage,
    DeadLetter,
    ErrorInfo,
    InferenceResult,
    MetricWindow,
    PromptRef,
    PromptRequest,
    SamplingParams,
    Timings,
    Usage,
)
from streams import rows
from streams.backfill import FEATURE_COLUMNS, features_from_row, stored_responses_query
from streams.detectors.base import Finding, Signal
from streams.features import extract_features
from streams.privacy import REDACTED
from streams.windows import WindowKey

TS = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
# Filled by ClickHouse itself (the tables' version column).
SERVER_COLUMNS = {"inserted_at"}


def ddl_columns(filename: str) -> tuple[str, ...]:
    [statement] = split_statements((MIGRATIONS_DIR / filename).read_text())
    body = statement[statement.index("(") + 1 : statement.rindex(")")]
    body = body[: body.rindex("ENGINE")] if "ENGINE" in body else body
    names = re.findall(r"^\s*([a-z_][a-z0-9_]*)\s+[A-Z]", body, flags=re.MULTILINE)
    return tuple(n for n in names if n not in SERVER_COLUMNS)


@pytest.mark.parametrize(
    ("filename", "columns"),
    [
        ("002_requests.sql", rows.REQUEST_COLUMNS),
        (
            "003_responses.sql",
            rows.RESPONSE_COLUMNS[: -len(rows.SIGNAL_COLUMNS) - len(rows.EMBEDDING_COLUMNS)],
        ),
        ("004_metric_windows.sql", rows.METRIC_WINDOW_COLUMNS),
        ("005_dead_letters.sql", rows.DEAD_LETTER_COLUMNS),
    ],
)
def test_columns_are_the_tables_columns(filename: str, columns: tuple[str, ...]) -> None:
    assert Path(MIGRATIONS_DIR / filename).is_file()
    assert columns == ddl_columns(filename)


def test_the_signal_columns_are_the_ones_009_adds_to_responses() -> None:
    statements = split_statements((MIGRATIONS_DIR / "009_response_signals.sql").read_text())
    added = [
        re.fullmatch(r"ALTER TABLE responses ADD COLUMN IF NOT EXISTS (\w+) .+", s, re.DOTALL)
        for s in statements
    ]
    assert tuple(m.group(1) for m in added if m) == rows.SIGNAL_COLUMNS
    assert len(statements) == len(rows.SIGNAL_COLUMNS)
    tail = rows.SIGNAL_COLUMNS + rows.EMBEDDING_COLUMNS
    assert rows.RESPONSE_COLUMNS[-len(tail) :] == tail


def test_the_embedding_column_is_the_one_012_adds_to_responses() -> None:
    statements = split_statements((MIGRATIONS_DIR / "012_response_embedding.sql").read_text())
    assert statements == ["ALTER TABLE responses ADD COLUMN IF NOT EXISTS embedding Array(Float32)"]
    assert rows.EMBEDDING_COLUMNS == ("embedding",)


def test_the_embedding_sample_columns_are_the_ones_015_adds_to_quality_windows() -> None:
    statements = split_statements((MIGRATIONS_DIR / "015_embedding_sample.sql").read_text())
    assert statements == [
        "ALTER TABLE quality_windows ADD COLUMN IF NOT EXISTS embedding_sample "
        "Array(Array(Float32))",
        "ALTER TABLE quality_windows ADD COLUMN IF NOT EXISTS embedding_sample_hashes "
        "Array(UInt64)",
    ]
    assert rows.QUALITY_WINDOW_COLUMNS[-2:] == ("embedding_sample", "embedding_sample_hashes")


def test_the_embedding_column_holds_the_first_embedding_vector_as_float32() -> None:
    vector = (0.1, -0.25, 1 / 3)
    columns = rows.signal_columns(
        [
            Signal("embedding", 1.0, "minilm_embeddings", "1"),  # no vector: not this one
            Signal("embedding", 1.0, "minilm_embeddings", "1", vector=vector),
            Signal("embedding", 1.0, "other", "1", vector=(9.0,)),
        ]
    )
    assert columns["embedding"] == [float(array("f", [v])[0]) for v in vector]
    assert columns["embedding"] != list(vector)  # rounded to float32
    assert rows.signal_columns([Signal("refusal", 1.0, "d", "1")])["embedding"] == []
    for bad in (math.nan, 1e40):
        assert (
            rows.signal_columns([Signal("embedding", 1.0, "d", "1", vector=(bad,))])["embedding"]
            == []
        )


def full_request() -> PromptRequest:
    return PromptRequest(
        request_id="req-1",
        ts=TS,
        tenant="acme",
        app="chat",
        user_id="u1",
        session_id="s1",
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="user", content="héllo"),
        ],
        model="gemma",
        adapter="lora-a",
        sampling=SamplingParams(max_tokens=64, temperature=0.5, top_p=0.9),
        stream=True,
        reply_to="llm.replies.app-1",
        deadline=TS + timedelta(seconds=30),
        attributes={"segment": "beta"},
        context="some grounding",
    )


def test_request_row() -> None:
    row = rows.request_row(full_request(), payload_size=321)
    assert tuple(row) == rows.REQUEST_COLUMNS
    assert row == {
        "request_id": "req-1",
        "event_id": row["event_id"],
        "ts": TS,
        "tenant": "acme",
        "app": "chat",
        "user_id": "u1",
        "session_id": "s1",
        "prompt_name": "",
        "prompt_label": "",
        "prompt_version": 0,
        "model": "gemma",
        "adapter": "lora-a",
        "stream": True,
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "message_count": 2,
        "input_chars": len("be brief") + len("héllo"),
        "has_context": True,
        "reply_to": "llm.replies.app-1",
        "deadline": TS + timedelta(seconds=30),
        "attributes": {"segment": "beta"},
        "payload_size": 321,
    }


def test_request_row_of_a_prompt_reference_with_defaults() -> None:
    request = PromptRequest(
        request_id="req-2",
        ts=TS,
        prompt=PromptRef(name="greet", label="prod", version=3, variables={"who": "Ada"}),
    )
    row = rows.request_row(request, payload_size=10)
    assert (row["prompt_name"], row["prompt_label"], row["prompt_version"]) == ("greet", "prod", 3)
    assert (row["message_count"], row["input_chars"]) == (0, 3)
    assert (row["user_id"], row["model"], row["reply_to"]) == ("", "", "")
    assert row["deadline"] is None
    assert row["has_context"] is False
    assert row["stream"] is False


def full_result(**overrides: object) -> InferenceResult:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "ts": TS,
        "tenant": "acme",
        "app": "chat",
        "text": "bonjour",
        "finish_reason": "length",
        "usage": Usage(input_tokens=11, output_tokens=3),
        "timings": Timings(queue_ms=1.5, ttft_ms=20.0, tpot_ms=5.0, total_ms=31.5),
        "chunks": 3,
        "pool": "gpu",
        "model": "gemma",
        "engine": "transformers",
        "prompt_name": "greet",
        "prompt_version": 2,
        "experiment": "exp1",
        "variant": "b",
        "route_reason": "weighted",
        "attributes": {"segment": "beta"},
        "cost_usd": 0.002,
        "context": "ctx",
    }
    fields.update(overrides)
    return InferenceResult.model_validate(fields)


def test_response_row() -> None:
    result = full_result()
    row = rows.response_row(result, extract_features(result), payload_size=99)
    assert tuple(row) == rows.RESPONSE_COLUMNS
    assert row == {
        "request_id": "req-1",
        "event_id": result.event_id,
        "ts": TS,
        "tenant": "acme",
        "app": "chat",
        "pool": "gpu",
        "model": "gemma",
        "engine": "transformers",
        "prompt_name": "greet",
        "prompt_version": 2,
        "experiment": "exp1",
        "variant": "b",
        "route_reason": "weighted",
        "finish_reason": "length",
        "error_kind": "",
        "error_message": "",
        "input_tokens": 11,
        "output_tokens": 3,
        "queue_ms": 1.5,
        "ttft_ms": 20.0,
        "tpot_ms": 5.0,
        "total_ms": 31.5,
        "output_chars": 7,
        "chunks": 3,
        "cost_usd": 0.002,
        "has_context": True,
        "text": "bonjour",
        "attributes": {"segment": "beta"},
        "payload_size": 99,
        "signals": {},
        "signal_detectors": {},
        "finding_signal": [],
        "finding_kind": [],
        "finding_where": [],
        "finding_start": [],
        "finding_end": [],
        "embedding": [],
    }


SECRET = "ada@example.com"


def test_a_response_row_carries_its_signals_and_spans_never_the_matched_text() -> None:
    result = full_result(text=f"Sorry, I can't. Mail {SECRET}")
    email = Finding("EMAIL", "output", 21, 36)
    signals = [
        Signal("refusal", 1.0, "refusal_patterns", "1", (Finding("refusal", "output", 0, 14),)),
        Signal("pii_output", 1.0, "pii_regex", "1", (email,)),
        Signal("pii_output:EMAIL", 1.0, "pii_regex", "1"),
        Signal("toxicity", 0.25, "profanity_check", "2"),
    ]
    row = rows.response_row(result, extract_features(result), 5, REDACTED, signals)
    assert tuple(row) == rows.RESPONSE_COLUMNS
    assert {c: row[c] for c in rows.SIGNAL_COLUMNS} == {
        "signals": {"refusal": 1.0, "pii_output": 1.0, "pii_output:EMAIL": 1.0, "toxicity": 0.25},
        "signal_detectors": {
            "refusal": "refusal_patterns@1",
            "pii_output": "pii_regex@1",
            "pii_output:EMAIL": "pii_regex@1",
            "toxicity": "profanity_check@2",
        },
        "finding_signal": ["refusal", "pii_output"],
        "finding_kind": ["refusal", "EMAIL"],
        "finding_where": ["output", "output"],
        "finding_start": [0, 21],
        "finding_end": [14, 36],
    }
    assert SECRET not in repr(row)


def test_signal_columns_drop_non_finite_values_and_repeated_names_and_clamp_offsets() -> None:
    huge = Finding("EMAIL", "input", -3, 2**40)
    columns = rows.signal_columns(
        [
            Signal("nan", math.nan, "d", "1", (huge,)),
            Signal("inf", -math.inf, "d", "1"),
            Signal("x\x00é", 2.0, "d", "1", (huge,)),
            Signal("x\x00é", 3.0, "e", "9"),
        ]
    )
    assert columns["signals"] == {"x\x00é": 2.0}
    assert columns["signal_detectors"] == {"x\x00é": "d@1"}
    assert (columns["finding_start"], columns["finding_end"]) == ([0], [2**32 - 1])
    assert rows.signal_columns([])["signals"] == {}


def test_findings_per_row_are_bounded() -> None:
    many = tuple(Finding("EMAIL", "output", i, i + 1) for i in range(1000))
    columns = rows.signal_columns(
        [Signal("pii_output", 1000.0, "pii_regex", "1", many), Signal("b", 1.0, "d", "1", many)]
    )
    assert len(columns["finding_kind"]) == rows.MAX_FINDINGS_PER_ROW
    assert set(columns["finding_signal"]) == {"pii_output"}
    assert columns["finding_start"] == list(range(rows.MAX_FINDINGS_PER_ROW))
    assert columns["signals"] == {"pii_output": 1000.0, "b": 1.0}


def test_response_row_of_an_error_with_nothing_routed() -> None:
    result = InferenceResult(
        request_id="req-9",
        ts=TS,
        finish_reason="error",
        error=ErrorInfo(kind="no_healthy_pool", message="all pools down"),
    )
    row = rows.response_row(result, extract_features(result), payload_size=1)
    assert (row["error_kind"], row["error_message"]) == ("no_healthy_pool", "all pools down")
    assert (row["pool"], row["model"], row["engine"], row["prompt_version"]) == ("", "", "", 0)
    assert row["has_context"] is False


def test_metric_window_row_is_the_event_field_for_field() -> None:
    window = MetricWindow(
        window_start=TS,
        window_end=TS + timedelta(seconds=10),
        prompt_name="greet",
        prompt_version=2,
        variant="b",
        pool="gpu",
        model="gemma",
        requests=5,
        errors=1,
        input_tokens=50,
        output_tokens=20,
        cost_usd=0.5,
        latency_p50_ms=10.0,
        latency_p95_ms=20.0,
        latency_p99_ms=30.0,
        ttft_p50_ms=1.0,
        ttft_p95_ms=2.0,
        output_chars_mean=12.5,
        finish_reasons={"stop": 4, "error": 1},
    )
    row = rows.metric_window_row(window)
    assert tuple(row) == rows.METRIC_WINDOW_COLUMNS
    assert row == window.model_dump(exclude={"schema_version"})


def test_dead_letter_row() -> None:
    letter = DeadLetter(
        ts=TS,
        kind="schema_invalid",
        reason="messages: too short",
        service="streams",
        source_topic="llm.requests",
        source_partition=4,
        source_offset=77,
        key_b64=None,
        payload_b64="e30=",
        payload_size=2,
        headers={"traceparent": "00-x"},
        request_id="req-5",
    )
    row = rows.dead_letter_row(letter)
    assert tuple(row) == rows.DEAD_LETTER_COLUMNS
    assert row == {
        "event_id": letter.event_id,
        "ts": TS,
        "kind": "schema_invalid",
        "reason": "messages: too short",
        "service": "streams",
        "source_topic": "llm.requests",
        "source_partition": 4,
        "source_offset": 77,
        "request_id": "req-5",
        "reply_to": "",
        "payload_size": 2,
        "payload_b64": "e30=",
        "key_b64": "",
        "headers": {"traceparent": "00-x"},
    }


# --- reading windows back ------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        full_result(),
        full_result(
            finish_reason="error", text="", error=ErrorInfo(kind="engine_error", message="x")
        ),
        full_result(finish_reason="error"),
        full_result(pool=None, model=None, prompt_name=None, prompt_version=None, variant=None),
    ],
)
def test_a_stored_response_reads_back_as_its_features(result: InferenceResult) -> None:
    features = extract_features(result)
    row = rows.response_row(result, features, payload_size=1)
    stored = {column: row[column] for column in FEATURE_COLUMNS}
    stored["ts"] = TS.replace(tzinfo=None)  # ClickHouse hands back naive UTC
    assert features_from_row(stored) == features


def test_the_query_spans_all_windows_and_names_their_groups() -> None:
    g1 = ("greet", 1, "a", "gpu", "m")
    g2 = ("greet", 1, "b", "gpu", "m")
    start = int(TS.timestamp() * 1000)
    sql, params = stored_responses_query(
        [WindowKey(start + 10_000, g1), WindowKey(start, g2), WindowKey(start, g1)], 10_000
    )
    assert "FROM responses" in sql and "FINAL" not in sql
    assert all(f"{{{name}:" in sql for name in params)
    assert params["lo"] == datetime.fromtimestamp(start / 1000, tz=UTC)
    assert params["hi"] == datetime.fromtimestamp((start + 20_000) / 1000, tz=UTC)
    assert params["groups"] == [g1, g2]


def test_the_query_needs_windows() -> None:
    with pytest.raises(ValueError):
        stored_responses_query([], 1000)
