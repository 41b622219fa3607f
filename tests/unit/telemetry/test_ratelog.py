"""Rejected records are logged once per kind per interval, and deep nesting is bad input."""

from __future__ import annotations

import logging

import pytest

from llmops.kafka.deadletter import Rejected, sniff_reply_fields
from llmops.kafka.record import Record
from llmops.telemetry.ratelog import RateLimiter, RejectionLog
from schemas import DeadLetter, PoolStatus, PromptRequest


def test_limiter_admits_one_per_key_per_interval_and_counts_the_rest() -> None:
    limiter = RateLimiter(10.0)
    assert limiter.admit("not_json", 0.0) == 0
    assert [limiter.admit("not_json", t) for t in (1.0, 5.0, 9.9)] == [None, None, None]
    assert limiter.admit("schema_invalid", 9.9) == 0  # kinds are independent
    assert limiter.admit("not_json", 10.0) == 3  # the held-back ones, told on the next line
    assert limiter.admit("not_json", 10.5) is None
    assert limiter.admit("not_json", 30.0) == 1


def test_limiter_memory_is_bounded_by_forgetting_the_quietest_key() -> None:
    limiter = RateLimiter(10.0, max_keys=2)
    limiter.admit("a", 0.0)
    limiter.admit("b", 1.0)
    assert limiter.admit("c", 2.0) == 0
    assert limiter.admit("a", 3.0) == 0  # forgotten, so admitted again
    assert limiter.admit("c", 3.0) is None


def test_rejection_log_writes_one_line_per_kind_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    rejections = RejectionLog(logging.getLogger("t.ratelog"), "router", 10.0, lambda: now[0])
    with caplog.at_level(logging.WARNING, "t.ratelog"):
        logged = [rejections.rejected("not_json", "bad", f"t[0]@{i}") for i in range(1000)]
        rejections.rejected("schema_invalid", "x" * 5000, "t[0]@1000")
        now[0] = 11.0
        rejections.rejected("not_json", "bad", "t[0]@1001")
    assert logged.count(True) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0] == "router rejected t[0]@0 as not_json: bad"
    assert len(lines[1]) < 400  # the reason is cut; the dead letter keeps it whole
    assert (
        lines[2]
        == "router rejected t[0]@1001 as not_json: bad (+999 more not_json since the last line)"
    )
    assert all(r.exc_info is None for r in caplog.records)


def test_a_handler_error_shows_its_traceback_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rejections = RejectionLog(logging.getLogger("t.ratelog2"), "pool", 10.0, lambda: 0.0)
    with caplog.at_level(logging.WARNING, "t.ratelog2"):
        for i in range(50):
            try:
                raise KeyError(i)
            except KeyError as exc:
                rejections.rejected("processing_error:KeyError", repr(exc), "t", error=exc)
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None


@pytest.mark.parametrize("depth", [300, 5_000, 200_000])
@pytest.mark.parametrize("opener,closer", [(b"[", b"]"), (b'{"a":', b"}")])
def test_deep_nesting_is_rejected_as_not_json_not_raised(
    depth: int, opener: bytes, closer: bytes
) -> None:
    payload = opener * depth + b"1" + closer * depth
    for contract in (PromptRequest, PoolStatus):
        record = Record("t", 0, 0, None, payload, [], 0)
        with pytest.raises(Rejected) as caught:
            record.decode(contract, 10_000_000)
        assert caught.value.kind == "not_json"
    assert sniff_reply_fields(payload) == (None, None)


def test_a_lone_surrogate_request_id_or_reason_still_makes_a_valid_dead_letter() -> None:
    """JSON may spell lone surrogates (no valid text): a dead letter or error reply carrying
    one failed validation, which stopped the consumer at the same record at every restart."""
    payload = b'{"request_id": "\\ud891x", "attributes": {"\\ud800": 1}}'
    record = Record("llm.requests", 0, 7, None, payload, [], 0)
    with pytest.raises(Rejected) as caught:
        record.decode(PromptRequest, 10_000)
    rejected = caught.value
    assert rejected.request_id is None
    letter = record.dead_letter(Rejected("schema_invalid", "bad \ud800 key", "\udc00"), "router")
    assert letter.reason == "bad \\ud800 key" and letter.request_id is None
    assert DeadLetter.model_validate_json(letter.to_bytes()) == letter
