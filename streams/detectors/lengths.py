"""Lengths in characters of what went in and what came out: cheap, on every response."""

from __future__ import annotations

from collections.abc import Sequence

from streams.detectors.base import Detector, Exchange, Signal


class LengthsDetector(Detector):
    """Signals `input_chars` and `output_chars` (code points, as Python counts them)."""

    name = "lengths"
    version = "1"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        return [
            [self.signal("input_chars", len(e.input)), self.signal("output_chars", len(e.output))]
            for e in exchanges
        ]
