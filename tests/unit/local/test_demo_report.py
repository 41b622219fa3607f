"""The demo's summary reads whole in an 80-column terminal, and its timeline line."""

from __future__ import annotations

from rich.console import Console

from llmops.local.demo.report import Outcome, summarize, summarize_by_group
from llmops.local.demo.traffic import DemoReport, render_report, timeline
from schemas import InferenceResult, Usage

GROUPS = [
    ("support-answer", 1, "control"),
    ("support-answer", 2, "treatment"),
    ("summarize", 1, "default"),
    (None, None, "default"),
]


def report(latency_ms: float = 183_456.0, tokens: int = 123_456) -> DemoReport:
    outcomes = []
    for i in range(24):
        prompt, version, variant = GROUPS[i % len(GROUPS)]
        result = InferenceResult(
            request_id=f"r{i}",
            finish_reason="length",
            prompt_name=prompt,
            prompt_version=version,
            variant=variant,
            pool="local-cpu",
            usage=Usage(input_tokens=tokens, output_tokens=tokens),
        )
        outcomes.append(Outcome(f"r{i}", latency_ms + i, result))
    return DemoReport(outcomes, summarize("all", outcomes), summarize_by_group(outcomes), 24, 181.2)


def test_summary_fits_80_columns_without_cutting_a_cell() -> None:
    console = Console(width=80, record=True)
    render_report(report(), console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in ("support-answer@v1", "support-answer@v2", "summarize@v1", "treatment"):
        assert name in text
    totals = next(line for line in text.splitlines() if line.split()[:1] == ["all"])
    expected = ["24", "24", "0", "183468", "183478", "183479", "2962944", "2962944"]
    assert totals.split()[1:] == expected


def test_timeline_counts_from_the_first_reply_not_the_fastest_latency() -> None:
    done = report(latency_ms=50.0)
    done.first_reply_at = 1181.0
    assert timeline(done, started=1000.0, now=1200.0) == (
        "first reply 181.0s after start; demo done 200.0s after start"
    )
    done.first_reply_at = None
    assert timeline(done, started=1000.0, now=1200.0).startswith("no reply;")
