"""Lengths in characters, always, whatever the text."""

from __future__ import annotations

from streams.detectors.base import Exchange
from streams.detectors.lengths import LengthsDetector


def test_lengths_count_code_points() -> None:
    out = LengthsDetector().detect(
        [
            Exchange("a", "", ""),
            Exchange("b", "héllo 🙂", "x" * (1 << 20)),
            Exchange("c", "\ud800", ""),
        ]
    )
    assert [[(s.name, s.value) for s in signals] for signals in out] == [
        [("input_chars", 0.0), ("output_chars", 0.0)],
        [("input_chars", 7.0), ("output_chars", float(1 << 20))],
        [("input_chars", 1.0), ("output_chars", 0.0)],
    ]
    assert {(s.detector, s.version) for s in out[0]} == {("lengths", "1")}
