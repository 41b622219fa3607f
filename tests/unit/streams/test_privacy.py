"""Settings.store_text: rows built under `none` hold no text a user or a model wrote."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from llmops.config import Settings
from schemas import DeadLetter, InferenceResult, Usage
from streams import rows
from streams.features import extract_features
from streams.privacy import NONE, RAW, REDACTED, TextPolicy, text_policy

SECRET = "my card is 4111 1111 1111 1111"
TS = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def result() -> InferenceResult:
    return InferenceResult(
        request_id="req-1",
        ts=TS,
        text=SECRET,
        finish_reason="stop",
        usage=Usage(input_tokens=4, output_tokens=9),
        context="grounding that quotes the user",
    )


def letter() -> DeadLetter:
    return DeadLetter(
        ts=TS,
        kind="schema_invalid",
        reason="messages: too short",
        service="streams",
        source_topic="llm.requests",
        source_partition=1,
        source_offset=7,
        key_b64=base64.b64encode(b"user-42").decode(),
        payload_b64=base64.b64encode(SECRET.encode()).decode(),
        payload_size=len(SECRET),
        headers={"traceparent": "00-abc-def-01", "x-user-email": "ada@example.com"},
    )


def stored_text(row: rows.Row) -> str:
    """Every string the row would store, keys and values of maps included."""
    parts: list[str] = []
    for value in row.values():
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict):
            parts.extend(f"{k}={v}" for k, v in value.items())
    return "\n".join(parts)


def test_none_stores_no_response_text_and_keeps_the_metrics() -> None:
    res = result()
    raw = rows.response_row(res, extract_features(res), payload_size=50, policy=RAW)
    none = rows.response_row(res, extract_features(res), payload_size=50, policy=NONE)
    assert raw["text"] == SECRET
    assert none["text"] == ""
    assert SECRET not in stored_text(none)
    # Counts, lengths and flags are not text: the metrics stay the same.
    assert {k: v for k, v in none.items() if k != "text"} == {
        k: v for k, v in raw.items() if k != "text"
    }
    assert (none["output_chars"], none["has_context"]) == (len(SECRET), True)


def test_none_stores_no_dead_letter_bytes_key_or_header_values() -> None:
    raw = rows.dead_letter_row(letter(), RAW)
    none = rows.dead_letter_row(letter(), NONE)
    assert base64.b64decode(raw["payload_b64"]).decode() == SECRET
    assert (none["payload_b64"], none["key_b64"]) == ("", "")
    assert none["headers"] == {"traceparent": "", "x-user-email": ""}
    text = stored_text(none)
    assert "ada@example.com" not in text and "dXNlci00Mg" not in text
    assert base64.b64encode(SECRET.encode()).decode() not in text
    # What the letter was and where it came from stay.
    assert (none["kind"], none["source_offset"], none["payload_size"]) == (
        "schema_invalid",
        7,
        len(SECRET),
    )


def test_redacted_stores_placeholders_not_the_planted_personal_data() -> None:
    res = result()
    row = rows.response_row(res, extract_features(res), payload_size=50, policy=REDACTED)
    assert row["text"] == "my card is <CREDIT_CARD>"
    assert "4111" not in stored_text(row)
    dead = rows.dead_letter_row(letter(), REDACTED)
    assert dead["headers"] == {"traceparent": "00-abc-def-01", "x-user-email": "<EMAIL>"}
    assert (dead["payload_b64"], dead["key_b64"]) == ("", "")  # bytes cannot be redacted
    assert "ada@example.com" not in stored_text(dead)
    # The metrics are those of the raw text.
    raw = rows.response_row(res, extract_features(res), payload_size=50, policy=RAW)
    assert {k: v for k, v in row.items() if k != "text"} == {
        k: v for k, v in raw.items() if k != "text"
    }


def test_the_setting_picks_the_policy() -> None:
    assert text_policy(Settings(store_text="raw").store_text) == RAW
    assert text_policy(Settings(store_text="none").store_text) == NONE
    assert text_policy(Settings(store_text="redacted").store_text) == REDACTED
    assert text_policy(Settings().store_text) == REDACTED  # personal data is masked by default


def test_a_redactor_is_the_hook_for_pii_redaction() -> None:
    masked = TextPolicy(keep_raw=False, redactor=lambda text: text.replace("4111", "####"))
    res = result()
    row = rows.response_row(res, extract_features(res), payload_size=50, policy=masked)
    assert row["text"] == SECRET.replace("4111", "####")
    # Raw bytes are not text: a redacting policy drops them.
    assert rows.dead_letter_row(letter(), masked)["payload_b64"] == ""
