"""Toxicity by alt-profanity-check: the real model on fixed texts, and the batching around it."""

from __future__ import annotations

import math

import pytest

from streams.detectors.base import Exchange
from streams.detectors.toxicity import ToxicityDetector


@pytest.fixture(scope="module")
def detector() -> ToxicityDetector:
    return ToxicityDetector()


def test_profane_text_scores_high_and_clean_text_low(detector: ToxicityDetector) -> None:
    rude, polite = detector.detect(
        [
            Exchange("a", "", "You are a fucking idiot, shut the fuck up."),
            Exchange("b", "", "The capital of France is Paris."),
        ]
    )
    assert [s.name for s in rude] == ["toxicity"]
    assert rude[0].value > 0.9
    assert polite[0].value < 0.2
    assert (rude[0].detector, rude[0].version) == ("profanity_check", "1")


def test_inputs_are_scored_as_toxicity_input(detector: ToxicityDetector) -> None:
    (signals,) = detector.detect([Exchange("a", "fuck you, bitch", "I'd rather not.")])
    by_name = {s.name: s.value for s in signals}
    assert set(by_name) == {"toxicity", "toxicity_input"}
    assert by_name["toxicity_input"] > 0.9 > by_name["toxicity"]


def test_empty_texts_get_no_signal(detector: ToxicityDetector) -> None:
    assert detector.detect([Exchange("a", "", ""), Exchange("b", " \n", "\t")]) == [[], []]
    assert detector.detect([]) == []


def test_hostile_texts_get_a_probability(detector: ToxicityDetector) -> None:
    out = detector.detect(
        [Exchange("a", "\ud800\x00", "x" * (1 << 20)), Exchange("b", "", "🙂 שלום \x1b[0m")]
    )
    values = [s.value for signals in out for s in signals]
    assert len(values) == 3
    assert all(0.0 <= v <= 1.0 for v in values)


def test_one_call_per_batch_and_scores_go_back_to_their_exchange() -> None:
    calls: list[list[str]] = []

    def scorer(texts: list[str]) -> list[float]:
        calls.append(texts)
        return [len(t) / 100 for t in texts]

    out = ToxicityDetector(scorer).detect(
        [Exchange("a", "in", "out1"), Exchange("b", "", ""), Exchange("c", "input3", "")]
    )
    assert calls == [["out1", "in", "input3"]]
    assert [[(s.name, s.value) for s in signals] for signals in out] == [
        [("toxicity", 0.04), ("toxicity_input", 0.02)],
        [],
        [("toxicity_input", 0.06)],
    ]


def test_a_score_the_model_could_not_make_is_left_out_and_others_are_clamped() -> None:
    def scorer(texts: list[str]) -> list[float]:
        return [math.nan, math.inf, 1.5, -0.5][: len(texts)]

    out = ToxicityDetector(scorer).detect([Exchange("a", "i", "o"), Exchange("b", "i", "o")])
    assert [[(s.name, s.value) for s in signals] for signals in out] == [
        [],
        [("toxicity", 1.0), ("toxicity_input", 0.0)],
    ]
