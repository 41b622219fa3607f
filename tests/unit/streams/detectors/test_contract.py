"""One contract for every registered detector driver: the worker may swap any for another.

Parametrized over every name in DETECTORS after the shipped drivers register, so a new driver
is held to it without a line here.
"""

from __future__ import annotations

import math

import pytest

from streams.detectors import drivers
from streams.detectors.base import Detector, Exchange, Signal
from streams.detectors.factory import DETECTORS

NAMES = DETECTORS.names()
MEGABYTE = 1 << 20

HOSTILE = [
    Exchange("empty", "", ""),
    Exchange("empty-json", "", "", context="", wants_json=True),
    Exchange("huge", "q" * 1000, "word. " * (MEGABYTE // 6), context="word " * 100),
    Exchange("huge-input", "I can't help. " * (MEGABYTE // 14), "ok"),
    Exchange("spaces", " \t\n" * 50_000, "sorry" + " " * 100_000 + "x", context=" " * 1000),
    Exchange("unicode", "¿Qué? 你好 🙂", "Ünïcödé 👩‍👩‍👧 שלום مرحبا e\u0301", context="你好 世界"),
    Exchange("control", "\x00\x01\x02", "\x00\x07\x1b[31m\x7f\u200b\u2028\ufeff", wants_json=True),
    Exchange("surrogate", "\ud800", "lone \udfff surrogate. \ud83d", context="\udc00 lone"),
    Exchange("binary", "", bytes(range(256)).decode("latin-1"), context="\x00", wants_json=True),
    Exchange("json", "give JSON", '{"a": [1, 2, {"b": null}]}', wants_json=True),
    Exchange("deep-json", "", "[" * 100_000 + "]" * 100_000, wants_json=True),
    Exchange(
        "typical",
        "What is the capital of France? email me at a@b.example",
        "I'm sorry, but I can't help with that. Paris is the capital of France.",
        context="Paris is the capital and largest city of France.",
        wants_json=True,
    ),
]


def whole_sample(built: Detector) -> Detector:
    """A sampled tier (it reads a share of exchanges, picked by request id) set to read every
    exchange, so the contract sees it judge them all; its sampling has its own tests."""
    with_sample_rate = getattr(built, "with_sample_rate", None)
    if with_sample_rate is None:
        return built
    whole: Detector = with_sample_rate(1.0)
    return whole


@pytest.fixture(scope="module", params=NAMES)
def detector(request: pytest.FixtureRequest) -> Detector:
    name: str = request.param
    built = DETECTORS.create(name)
    assert built.name == name, "a driver is registered under its own name"
    assert built.version
    return whole_sample(built)


@pytest.fixture(scope="module")
def hostile_results(detector: Detector) -> list[list[Signal]]:
    return detector.detect(HOSTILE)


def text_of(exchange: Exchange, where: str) -> str:
    return {"input": exchange.input, "output": exchange.output, "context": exchange.context or ""}[
        where
    ]


def test_the_cheap_tier_names_registered_drivers() -> None:
    assert set(drivers.CHEAP_TIER) <= set(NAMES)
    assert len(set(drivers.CHEAP_TIER)) == len(drivers.CHEAP_TIER)


def test_one_list_per_exchange(hostile_results: list[list[Signal]]) -> None:
    assert len(hostile_results) == len(HOSTILE)
    assert all(isinstance(signals, list) for signals in hostile_results)


def test_an_empty_batch_gives_nothing(detector: Detector) -> None:
    assert detector.detect([]) == []


def test_signals_are_finite_and_stamped(
    detector: Detector, hostile_results: list[list[Signal]]
) -> None:
    for signals in hostile_results:
        for signal in signals:
            assert math.isfinite(signal.value), signal
            assert (signal.detector, signal.version) == (detector.name, detector.version)
            assert signal.name


def test_findings_lie_within_their_text(hostile_results: list[list[Signal]]) -> None:
    for exchange, signals in zip(HOSTILE, hostile_results, strict=True):
        for signal in signals:
            for finding in signal.findings:
                text = text_of(exchange, finding.where)
                assert 0 <= finding.start <= finding.end <= len(text), (
                    exchange.request_id,
                    finding,
                )
                assert math.isfinite(finding.score)


def test_a_batch_equals_single_calls(
    detector: Detector, hostile_results: list[list[Signal]]
) -> None:
    # Order within the batch and batching itself change nothing: each exchange is judged alone.
    assert [detector.detect([e])[0] for e in HOSTILE] == hostile_results
    assert detector.detect(HOSTILE[::-1]) == hostile_results[::-1]


def test_the_cheap_drivers_see_something_in_a_typical_exchange(
    hostile_results: list[list[Signal]],
) -> None:
    # A driver that never reports would pass every check above; this exchange has something
    # for each shipped one (a refusal, an email, a context, JSON asked for).
    typical = hostile_results[-1]
    assert typical, "every shipped driver reports on this exchange"
