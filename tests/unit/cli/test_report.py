"""`llmops report`'s pure parts on fixed inputs: durations, sparklines, the rollup of windows
(rates as summed hits of summed totals with Wilson intervals, latency from merged sketches or
labelled bounds) and the rich tables it prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from llmops.cli.errors import Mistake
from llmops.cli.report import (
    Report,
    WindowRow,
    health_table,
    merged_latency,
    parse_since,
    pii_table,
    rate_cell,
    sketch_merger,
    sparkline,
    summarize,
    trend_table,
)
from llmops.stats.proportions import wilson_interval
from streams.sketches import encode_sketch, kll_of

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


def window(
    minute: int,
    version: int = 1,
    responses: int = 100,
    errors: int = 0,
    hits: dict[str, int] | None = None,
    latencies: list[float] | None = None,
    quantiles: list[float] | None = None,
    prompt: str = "support",
) -> WindowRow:
    answers = responses - errors
    totals = {"refusal": answers, "pii_output": answers, "toxic": answers, "error": responses}
    return WindowRow(
        START + timedelta(minutes=minute),
        prompt,
        version,
        responses,
        errors,
        {"error": errors, **(hits or {})},
        totals,
        quantiles or [],
        encode_sketch(kll_of(latencies)) if latencies else "",
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        (" 2d ", 172_800),
        ("1w", 604_800),
        ("90d", 7_776_000),
    ],
)
def test_parse_since(text: str, seconds: int) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h", "1.5h", "0s", "91d", "99999999h"])
def test_parse_since_refuses(text: str) -> None:
    with pytest.raises(Mistake, match="--since"):
        parse_since(text)


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([10.0, None, 20.0, float("nan")]) == "▁ █ "
    assert sparkline([3.0, 3.0]) == "▁▁"
    assert sparkline([None, None]) == "  "
    assert sparkline([]) == ""


def test_rates_are_summed_hits_of_summed_totals_with_wilson() -> None:
    windows = [
        window(0, responses=100, errors=2, hits={"refusal": 5, "pii_output": 1}),
        window(30, responses=50, errors=0, hits={"refusal": 10}),
        window(10, version=2, responses=10, errors=1, hits={"toxic": 9}),
    ]
    v1, v2 = summarize(windows, START, END, buckets=4)
    assert (v1.prompt_version, v1.windows, v1.responses, v1.errors) == (1, 2, 150, 2)
    refusal = v1.rates["refusal"]
    assert (refusal.hits, refusal.totals) == (15, 148)  # of the answers: errors excluded
    expected = wilson_interval(15, 148)
    assert (refusal.low, refusal.high) == (expected.low, expected.high)
    assert (v1.rates["error"].hits, v1.rates["error"].totals) == (2, 150)
    assert v1.rates["unsupported"].totals == 0 and v1.rates["unsupported"].value is None
    assert v2.rates["toxic"].value == 1.0
    assert v1.pii_types() == [] and "pii_output.EMAIL" not in v1.rates
    # buckets of 15 minutes: the windows at 0 and 30 land in the first and third
    assert [b.rate("refusal") for b in v1.buckets] == [5 / 98, None, 0.2, None]
    assert [b.start for b in v1.buckets] == [START + timedelta(minutes=15 * i) for i in range(4)]


def test_pii_entity_types_count_of_the_answers_checked() -> None:
    windows = [
        window(0, hits={"pii_output": 3, "pii_output.EMAIL": 2, "pii_output.IBAN": 1}),
        window(1, hits={"pii_output": 2, "pii_output.IBAN": 2}),
        window(2),  # no entity found: its answers were checked all the same
    ]
    (health,) = summarize(windows, START, END, buckets=1)
    types = health.pii_types()
    assert [(name, rate.hits, rate.totals) for name, rate in types] == [
        ("pii_output.IBAN", 3, 300),
        ("pii_output.EMAIL", 2, 300),
    ]
    expected = wilson_interval(3, 300)
    assert (types[0][1].low, types[0][1].high) == (expected.low, expected.high)
    text = rendered(Report(START, END, "1h", None, [health], 3600.0))
    assert "PII in answers by entity type" in text
    iban = next(line for line in text.splitlines() if "IBAN" in line)
    assert iban.split("│")[3:6] == [" IBAN   ", "       3 ", f" {rate_cell(types[0][1])} "]


def test_windows_without_an_error_rate_use_the_counts() -> None:
    row = WindowRow(START, "p", 1, 10, 3, {}, {}, [], "")
    (health,) = summarize([row], START, END, buckets=1)
    assert (health.rates["error"].hits, health.rates["error"].totals) == (3, 10)


def test_latency_merges_sketches_not_percentiles() -> None:
    fast = [float(v) for v in range(1, 91)]  # 90 answers, 1..90 ms
    slow = [1000.0 + v for v in range(10)]  # 10 answers, 1000..1009 ms
    windows = [window(0, latencies=fast), window(1, latencies=slow)]
    latency = merged_latency(windows, sketch_merger())
    assert latency is not None and latency.exact
    whole = kll_of(fast + slow)  # under k values a sketch is exact: the union's quantiles
    assert (latency.p50, latency.p95, latency.p99) == tuple(
        float(q) for q in whole.get_quantiles([0.5, 0.95, 0.99])
    )
    assert latency.p50 <= 60.0 and latency.p95 >= 1000.0
    # the average of the two windows' medians would say 525 ms


def test_latency_without_sketches_is_a_labelled_bound() -> None:
    windows = [
        window(0, quantiles=[100, 150, 200, 300]),
        window(1, quantiles=[120, 170, 180, 400]),
    ]
    latency = merged_latency(windows, sketch_merger())
    assert latency is not None and not latency.exact
    assert (latency.p50, latency.p95, latency.p99) == (120, 200, 400)
    assert merged_latency([window(0)], sketch_merger()) is None
    # an unreadable sketch: the bound, not an exact figure of the others
    broken = [window(0, latencies=[5.0], quantiles=[5, 5, 5, 5]), window(1, quantiles=[7] * 4)]
    broken[1] = WindowRow(**{**broken[1].__dict__, "latency_sketch": "not a sketch!"})
    unreadable = merged_latency(broken, sketch_merger())
    assert unreadable is not None and not unreadable.exact and unreadable.p95 == 7
    # no merger at hand: the bound too
    mixed = [window(0, latencies=[1.0, 2.0], quantiles=[1, 2, 2, 2])]
    bound = merged_latency(mixed, None)
    assert bound is not None and not bound.exact


def report_of(windows: list[WindowRow]) -> Report:
    versions = summarize(windows, START, END, buckets=6, merge=sketch_merger())
    support = next((v for v in versions if v.prompt_name == "support"), versions[0])
    support.open_alerts = 2
    support.drifted_features = ["output_chars", "latency_ms"]
    return Report(START, END, "1h", None, versions, 600.0)


def rendered(report: Report) -> str:
    console = Console(record=True, width=240, color_system=None)
    console.print(health_table(report))
    pii = pii_table(report)
    if pii is not None:
        console.print(pii)
    console.print(trend_table(report))
    return console.export_text()


def test_tables_show_the_numbers() -> None:
    windows = [
        window(0, responses=200, errors=4, hits={"refusal": 10, "pii_output": 2},
               latencies=[float(v) for v in range(1, 101)]),
        window(20, responses=100, hits={"refusal": 30}, latencies=[200.0] * 10),
        window(5, version=2, responses=50, quantiles=[10, 20, 30, 40], prompt="summarize"),
    ]  # fmt: skip
    text = rendered(report_of(windows))
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("│ support"))
    support, intervals = lines[at], lines[at + 1]
    assert "│       300 │" in support  # responses
    refusal = wilson_interval(40, 296)
    assert "│       13.5% │" in support
    assert f"│ {100 * refusal.low:.1f}%-{100 * refusal.high:.1f}% │" in intervals
    assert "│       1.33% │" in support  # errors 4 of 300
    assert "output_chars," in support and "│           2 │" in support
    values = [float(v) for v in range(1, 101)] + [200.0] * 10
    p50, p95, p99 = kll_of(values).get_quantiles([0.5, 0.95, 0.99])  # the merged sketch's
    assert f"│ {p50:6,.0f} │ {p95:6,.0f} │ {p99:6,.0f} │" in support
    summarize_line = next(line for line in lines if line.startswith("│ summarize"))
    assert "≤10" in summarize_line and "≤30" in summarize_line and "≤40" in summarize_line
    assert "Trends, 6 steps of 10 min" in text
    at = [i for i, line in enumerate(lines) if line.startswith("│ support")][1]
    trend, ranges = lines[at], lines[at + 1]
    # refusal 5.1% then 30% in two of six steps; p95 96 ms then 200 ms
    assert "│ ▁ █    " in trend and "│ 5.10%-30.0% " in ranges and "│ 96 ms-200 ms " in ranges


def test_store_text_is_not_markup() -> None:
    windows = [window(0, prompt="[bold red]evil[/]")]
    text = rendered(report_of(windows))
    assert "[bold red]evil[/]" in text
