"""Dead letters without a broker: how decode failures are classified and described, what is
sniffed from bad input, which exceptions become which rejection, and what a dead letter keeps."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import BaseModel, ValidationError

from llmops.kafka.deadletter import (
    MAX_KEPT_PAYLOAD,
    Rejected,
    build_dead_letter,
    classify_decode_error,
    describe_validation_error,
    rejection_for,
    sniff_reply_fields,
)
from llmops.kafka.record import Record
from schemas import DeadLetter, PromptRequest
from schemas.base import MAX_ID_LEN


class Point(BaseModel):
    x: int
    y: int


class Many(BaseModel):
    a: int
    b: int
    c: int
    d: int
    e: int
    f: int
    g: int


def validation_error(model: type[BaseModel], payload: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(payload)
    return caught.value


def record(
    value: bytes | None, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
) -> Record:
    return Record("llm.requests", 3, 42, key, value, headers or [], 1_700_000_000_000)


# describe_validation_error


def test_a_validation_error_is_described_one_field_path_per_problem() -> None:
    error = validation_error(Point, b'{"x": "not a number"}')
    described = describe_validation_error(error)
    assert described.startswith("x: ")
    assert "; y: Field required" in described


def test_a_root_problem_is_named_root() -> None:
    described = describe_validation_error(validation_error(Point, b"[1, 2]"))
    assert described.startswith("<root>: ")


def test_the_description_is_capped_and_says_how_many_more() -> None:
    error = validation_error(Many, b"{}")
    described = describe_validation_error(error, limit=3)
    assert described.count("Field required") == 3
    assert described.endswith("... and 4 more")
    assert "more" not in describe_validation_error(error, limit=7)


# classify_decode_error


def test_invalid_json_is_not_json() -> None:
    payload = b"{not json"
    rejected = classify_decode_error(payload, validation_error(Point, payload))
    assert rejected.kind == "not_json"
    assert rejected.reason.startswith("not valid JSON: ")


def test_json_against_the_contract_is_schema_invalid_with_the_fields() -> None:
    payload = b'{"x": 1}'
    rejected = classify_decode_error(payload, validation_error(Point, payload))
    assert (rejected.kind, rejected.reason) == ("schema_invalid", "y: Field required")


def test_nesting_too_deep_to_decode_is_not_json_with_the_size() -> None:
    rejected = classify_decode_error(b"[" * 10, RecursionError("too deep"))
    assert (rejected.kind, rejected.reason) == (
        "not_json",
        "nested too deeply to decode (10 bytes)",
    )


def test_any_other_decode_failure_is_a_processing_error_naming_it() -> None:
    rejected = classify_decode_error(b"x", ValueError("odd"))
    assert (rejected.kind, rejected.reason) == ("processing_error", "ValueError: odd")


# rejection_for


def test_a_rejection_stays_itself_and_is_no_bug() -> None:
    rejected = Rejected("unroutable", "no such pool", "r1", "llm.replies.a")
    assert rejection_for(rejected) == (rejected, None)


def test_recursion_is_bad_input_not_a_bug() -> None:
    rejected, bug = rejection_for(RecursionError())
    assert (rejected.kind, rejected.reason, bug) == (
        "schema_invalid",
        "nested too deeply to process",
        None,
    )


def test_any_other_exception_is_a_processing_error_and_the_bug_behind_it() -> None:
    error = KeyError("boom")
    rejected, bug = rejection_for(error)
    assert rejected.kind == "processing_error"
    assert rejected.reason == "KeyError: 'boom'"
    assert bug is error


def test_a_reason_with_lone_surrogates_is_kept_as_valid_text() -> None:
    rejected = Rejected("schema_invalid", "bad \ud800")
    assert rejected.reason == "bad \\ud800" == str(rejected)
    rejected.reason.encode()  # would raise UnicodeEncodeError on a raw surrogate


# sniff_reply_fields


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"\xff\xfe", b"[1, 2]", b'"text"', b"null", b"[" * 100_000 + b"]" * 100_000],
)
def test_nothing_is_sniffed_from_what_is_no_json_object(payload: bytes) -> None:
    assert sniff_reply_fields(payload) == (None, None)


@pytest.mark.parametrize(
    "request_id",
    [7, None, "", "x" * (MAX_ID_LEN + 1), "\ud800", ["r1"], {"id": "r1"}],
)
def test_a_request_id_the_contract_refuses_is_not_sniffed(request_id: object) -> None:
    payload = json.dumps({"request_id": request_id, "reply_to": "llm.replies.a"}).encode()
    assert sniff_reply_fields(payload) == (None, "llm.replies.a")


def test_the_longest_identifier_is_sniffed() -> None:
    longest = "r" * MAX_ID_LEN
    assert sniff_reply_fields(json.dumps({"request_id": longest}).encode()) == (longest, None)


@pytest.mark.parametrize("reply_to", [5, "llm.responses", "llm.dlq", ["llm.replies.a"]])
def test_a_reply_address_that_is_no_reply_topic_is_not_sniffed(reply_to: object) -> None:
    payload = json.dumps({"request_id": "r1", "reply_to": reply_to}).encode()
    assert sniff_reply_fields(payload) == ("r1", None)


# build_dead_letter


def test_a_dead_letter_keeps_the_record_whole_with_where_it_came_from() -> None:
    source = record(b'{"x": 1}', key=b"user-7", headers=[("content-type", b"application/json")])
    rejected = Rejected("schema_invalid", "y: Field required", "r1", "llm.replies.a")
    letter = build_dead_letter(source, rejected, "router")
    assert letter.kind == "schema_invalid"
    assert letter.reason == "y: Field required"
    assert letter.service == "router"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "llm.requests",
        3,
        42,
    )
    assert base64.b64decode(letter.key_b64 or "") == b"user-7"
    assert base64.b64decode(letter.payload_b64) == b'{"x": 1}'
    assert letter.payload_size == 8
    assert letter.headers == {"content-type": "application/json"}
    assert (letter.request_id, letter.reply_to) == ("r1", "llm.replies.a")


def test_the_record_method_is_the_builder() -> None:
    source = record(b"{", key=None)
    rejected = Rejected("not_json", "not valid JSON")
    by_record = source.dead_letter(rejected, "streams")
    by_builder = build_dead_letter(source, rejected, "streams")
    assert by_record.model_dump(exclude={"event_id", "ts"}) == by_builder.model_dump(
        exclude={"event_id", "ts"}
    )


def test_no_key_and_no_value_make_no_key_and_an_empty_payload() -> None:
    letter = build_dead_letter(record(None), Rejected("not_json", "empty"), "router")
    assert letter.key_b64 is None
    assert (letter.payload_b64, letter.payload_size) == ("", 0)


def test_a_large_payload_is_kept_up_to_the_bound_and_its_size_told() -> None:
    payload = b"a" * MAX_KEPT_PAYLOAD + b"b" * 1000
    letter = build_dead_letter(record(payload), Rejected("oversized", "too big"), "router")
    kept = base64.b64decode(letter.payload_b64)
    assert kept == b"a" * MAX_KEPT_PAYLOAD
    assert letter.payload_size == len(payload)


def test_reason_and_header_values_are_bounded() -> None:
    headers = [("big", b"v" * 5000), ("binary", b"\xff\xfe"), ("none", None)]  # type: ignore[list-item]
    rejected = Rejected("schema_invalid", "r" * 10_000)
    letter = build_dead_letter(record(b"x", headers=headers), rejected, "router")
    assert letter.reason == "r" * 8192
    assert letter.headers["big"] == "v" * 1024
    assert letter.headers["binary"] == "\ufffd\ufffd"
    assert letter.headers["none"] == ""


@pytest.mark.parametrize("request_id", ["", "x" * (MAX_ID_LEN + 1), "\udc00"])
def test_a_hostile_request_id_is_left_out_and_the_letter_stays_valid(request_id: str) -> None:
    rejected = Rejected("schema_invalid", "bad \ud800 key", request_id)
    letter = build_dead_letter(record(b"{}"), rejected, "router")
    assert letter.request_id is None
    assert letter.reason == "bad \\ud800 key"
    assert DeadLetter.model_validate_json(letter.to_bytes()) == letter


def test_a_decoded_hostile_payload_makes_a_valid_letter_without_its_ids() -> None:
    payload = json.dumps({"request_id": "x" * 500, "reply_to": "llm.dlq"}).encode()
    source = record(payload)
    with pytest.raises(Rejected) as caught:
        source.decode(PromptRequest, 1_000_000)
    letter = source.dead_letter(caught.value, "router")
    assert (letter.request_id, letter.reply_to) == (None, None)
    assert letter.kind == "schema_invalid"
    assert DeadLetter.model_validate_json(letter.to_bytes()) == letter
