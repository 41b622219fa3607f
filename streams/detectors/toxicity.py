"""Profanity/toxicity by `alt-profanity-check`: a linear SVM over word n-grams, calibrated.

Cheap (about ten thousand 1 KB texts a second on one core, batched) and crude: it scores
offensive wording, not harmful intent; the guard-model tier replaces it by configuration.
The library loads its model when imported, so it is imported when the detector is built,
never when a deployment does not name it.

Signals: `toxicity` (probability the output is profane) and `toxicity_input` (the same for the
input). Empty or whitespace-only texts get no signal: the model's score for no words is a
constant, not a measurement, and would dilute the rates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from streams.detectors.base import Detector, Exchange, Signal

Scorer = Callable[[list[str]], Sequence[float]]


def _profanity_check() -> Scorer:
    from profanity_check import predict_prob

    def score(texts: list[str]) -> Sequence[float]:
        result: Any = predict_prob(texts)
        return [float(p) for p in result]

    return score


class ToxicityDetector(Detector):
    """One batched model call per batch, over the non-empty outputs and inputs together."""

    name = "profanity_check"
    version = "1"

    def __init__(self, scorer: Scorer | None = None) -> None:
        # `scorer` replaces the library (a hosted classifier; tests); the default loads it.
        self._score = scorer if scorer is not None else _profanity_check()

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        texts: list[str] = []
        slots: list[tuple[int, str]] = []  # (exchange index, signal name) per text
        for i, exchange in enumerate(exchanges):
            for name, text in (("toxicity", exchange.output), ("toxicity_input", exchange.input)):
                if text.strip():
                    texts.append(text)
                    slots.append((i, name))
        out: list[list[Signal]] = [[] for _ in exchanges]
        if not texts:  # the library fails on an empty batch
            return out
        for (i, name), p in zip(slots, self._score(texts), strict=True):
            if math.isfinite(p):  # a score the model could not make is left out, not guessed
                out[i].append(self.signal(name, min(1.0, max(0.0, p))))
        return out
