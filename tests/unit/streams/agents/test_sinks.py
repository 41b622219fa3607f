"""The responses sink's detector step: signals of each record, a failing detector contained."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from llmops.telemetry.ratelog import RejectionLog
from schemas import InferenceResult
from streams.agents.sinks import SinkContext, detect_signals, exchange_of
from streams.detectors.base import Detector, Exchange, Finding, Signal
from streams.detectors.drivers import CHEAP_TIER
from streams.detectors.factory import create_detectors

LOG = logging.getLogger("test.sinks")


class Counts(Detector):
    name = "counts"
    version = "3"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        return [[self.signal("output_len", len(e.output))] for e in exchanges]


class Broken(Detector):
    name = "broken"
    version = "1"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        raise RuntimeError("boom")


class WrongLength(Detector):
    """Out of contract: answers for no exchange at all."""

    name = "wrong_length"
    version = "1"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        return []


def context(*detectors: Detector) -> SinkContext:
    from streams.privacy import RAW

    return SinkContext(
        RAW,
        None,
        "features",
        detectors,
        detector_failures=RejectionLog(LOG, "streams", clock=lambda: 0.0),
    )


def result(**fields: object) -> InferenceResult:
    return InferenceResult.model_validate({"request_id": "r1", "finish_reason": "stop", **fields})


def test_the_exchange_is_what_the_result_carries() -> None:
    exchange = exchange_of(result(text="out", prompt_text="in", context="ctx"))
    assert exchange == Exchange("r1", "in", "out", "ctx", wants_json=False)
    assert exchange_of(result()) == Exchange("r1", "", "", None, wants_json=False)


def test_a_raising_detector_leaves_its_signals_out_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sinks = context(Broken(), Counts(), WrongLength())
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        [first] = detect_signals(sinks, [exchange_of(result(text="héllo\x00"))])
        [second] = detect_signals(sinks, [exchange_of(result(text=""))])
    assert first == [Signal("output_len", 6.0, "counts", "3")]
    assert second == [Signal("output_len", 0.0, "counts", "3")]
    lines = [r for r in caplog.records if r.name == LOG.name]
    # One line per failing detector within the interval, however many records fail.
    assert len(lines) == 2
    assert "broken@1" in lines[0].getMessage()
    assert lines[0].exc_info is not None
    assert "wrong_length@1" in lines[1].getMessage()


def test_the_cheap_tier_finds_a_refusal_and_an_email_span() -> None:
    text = "I'm sorry, but I can't help with that. Write to ada@example.com."
    cheap = context(*create_detectors(CHEAP_TIER))
    [signals] = detect_signals(cheap, [exchange_of(result(text=text))])
    values = {s.name: s.value for s in signals}
    assert (values["refusal"], values["pii_output"]) == (1.0, 1.0)
    emails = [f for s in signals for f in s.findings if f.kind == "EMAIL"]
    start = text.index("ada@")
    assert emails == [Finding("EMAIL", "output", start, start + len("ada@example.com"))]


class FailsOnEmpty(Detector):
    """Raises on a batch holding an empty output: one bad exchange in a batch."""

    name = "fails_on_empty"
    version = "2"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        if any(not e.output for e in exchanges):
            raise ValueError("empty output")
        return [[self.signal("seen", 1.0)] for _ in exchanges]


def test_a_batch_is_detected_in_one_call_and_a_failure_costs_only_its_exchange() -> None:
    calls: list[int] = []

    class Recording(Counts):
        def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
            calls.append(len(exchanges))
            return super().detect(exchanges)

    sinks = context(Recording(), FailsOnEmpty())
    texts = ["a", "", "abc"]
    found = detect_signals(sinks, [exchange_of(result(text=x)) for x in texts])
    assert calls == [3]  # one call for the whole batch
    assert found == [
        [Signal("output_len", 1.0, "counts", "3"), Signal("seen", 1.0, "fails_on_empty", "2")],
        [Signal("output_len", 0.0, "counts", "3")],  # only the empty one lost that signal
        [Signal("output_len", 3.0, "counts", "3"), Signal("seen", 1.0, "fails_on_empty", "2")],
    ]
    assert detect_signals(sinks, []) == []


def test_a_request_that_asked_for_json_has_its_answer_checked() -> None:
    asked = exchange_of(result(text='{"a": 1}', response_format="json"))
    assert asked.wants_json is True
    assert exchange_of(result(text="{not json")).wants_json is False
