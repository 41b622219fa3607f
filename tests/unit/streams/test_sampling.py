"""streams.sampling: a stable share of request ids, nested across rates."""

from __future__ import annotations

import subprocess
import sys

from streams.sampling import sample_point, sampled

IDS = [f"req-{i}" for i in range(4000)]


def test_points_are_stable_across_processes() -> None:
    code = "from streams.sampling import sample_point; print(repr(sample_point('req-7')))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert float(other) == sample_point("req-7")


def test_points_lie_in_the_unit_interval_and_spread() -> None:
    points = [sample_point(i) for i in IDS]
    assert all(0.0 <= p < 1.0 for p in points)
    # Roughly uniform: each tenth holds between 7% and 13% of 4,000 ids (far outside chance).
    for tenth in range(10):
        share = sum(tenth / 10 <= p < (tenth + 1) / 10 for p in points) / len(points)
        assert 0.07 < share < 0.13, (tenth, share)


def test_a_rate_takes_about_its_share_and_the_samples_nest() -> None:
    small = {i for i in IDS if sampled(i, 0.05)}
    large = {i for i in IDS if sampled(i, 0.2)}
    assert small <= large
    assert 0.03 < len(small) / len(IDS) < 0.07
    assert 0.17 < len(large) / len(IDS) < 0.23


def test_bounds_and_hostile_rates_and_ids() -> None:
    assert all(sampled(i, 1.0) for i in IDS[:50])
    assert not any(sampled(i, 0.0) for i in IDS[:50])
    assert not sampled("x", float("nan"))
    assert not sampled("x", -1.0)
    assert sampled("x", 2.0)
    for hostile in ["", "\ud800 lone", "\x00" * 10, "日本語" * 1000]:
        assert 0.0 <= sample_point(hostile) < 1.0
        assert sampled(hostile, 0.5) == sampled(hostile, 0.5)
