"""`llmops report` against the real store (chDB behind the ClickHouse HTTP interface): quality
windows with real KLL sketches, open alerts and drift rows in, the health of each prompt
version out (rates with Wilson intervals, merged latency, alerts, drifted features,
sparklines), as rich tables and as one self-contained HTML file; the expected mistakes (no
data, a bad --since, the store down, no tables) one line each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmops.cli.app import app
from llmops.cli.report import percent
from llmops.clickhouse.client import apply_migrations, ensure_database
from llmops.config import get_settings
from llmops.local.procs import free_port
from llmops.stats.proportions import wilson_interval
from streams.sketches import encode_sketch, kll_of, quantiles_of

pytestmark = pytest.mark.integration

FAST = [float(v) for v in range(100, 190)]  # 90 answers of v1 in window 1: 100..189 ms
SLOW = [2000.0 + v for v in range(10)]  # 10 answers of v1 in window 2: 2000..2009 ms


def quality_row(start: datetime, version: int, latencies: list[float], **fields: Any) -> Any:
    sketch = kll_of(latencies)
    row = {
        "window_start": start,
        "window_end": start + timedelta(seconds=60),
        "prompt_name": "support",
        "prompt_version": version,
        "variant": "",
        "pool": "p1",
        "model": "m1",
        "segment": "",
        "event_id": uuid.uuid4().hex,
        "ts": start + timedelta(seconds=60),
        "responses": len(latencies),
        "errors": 0,
        "rate_totals": {"refusal": len(latencies), "pii_output": len(latencies)},
        "rate_hits": {},
        "quantiles": {"latency_ms": quantiles_of(sketch)},
        "sketches": {"latency_ms": encode_sketch(sketch)},
    }
    row.update(fields)
    return row


def insert(client: Any, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        client.insert(table, [list(row.values())], column_names=list(row))


@pytest.fixture
def report_env(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[datetime]:
    """A migrated database: support v1 (two windows, 100 answers, 12 refusals, 3 PII leaks),
    support v2 (one window), an old window out of range, a segment row, two open alerts on
    v1 and a resolved one on v2, drift on v1's output_chars. Returns the first window's start."""
    url = f"{store_url}/report_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(minutes=20)
    insert(
        client,
        "quality_windows",
        [
            quality_row(
                first,
                1,
                FAST,
                errors=2,
                rate_hits={"refusal": 9, "pii_output": 3, "pii_output.EMAIL": 2, "error": 2},
                rate_totals={"refusal": 88, "pii_output": 88, "error": 90},
            ),
            quality_row(first + timedelta(minutes=10), 1, SLOW, rate_hits={"refusal": 3}),
            quality_row(first + timedelta(minutes=5), 2, [300.0] * 40),
            quality_row(now - timedelta(days=2), 1, [9e4] * 5, rate_hits={"refusal": 5}),
            quality_row(first, 1, FAST, segment="locale=de", rate_hits={"refusal": 90}),
        ],
    )
    alert: dict[str, Any] = {"ts": now, "severity": "warning", "kind": "safety"}
    insert(
        client,
        "alerts",
        [
            {**alert, "alert_id": "a1", "state": "open", "prompt_name": "support",
             "prompt_version": 1, "subject": "s1", "message": "m"},
            {**alert, "alert_id": "a2", "state": "open", "prompt_name": "support",
             "prompt_version": 1, "subject": "s2", "message": "m"},
            {**alert, "alert_id": "a3", "state": "resolved", "prompt_name": "support",
             "prompt_version": 2, "subject": "s3", "message": "m"},
        ],
    )  # fmt: skip
    drift = {"prompt_name": "support", "prompt_version": 1, "statistic": "psi", "value": 0.4}
    insert(
        client,
        "drift",
        [
            {**drift, "window_start": first, "feature": "output_chars", "drifted": 1},
            {**drift, "window_start": first, "feature": "latency_ms", "drifted": 0},
            {**drift, "window_start": now - timedelta(days=2), "feature": "toxicity", "drifted": 1},
        ],
    )
    client.close()
    monkeypatch.setenv("CLICKHOUSE_URL", url)
    get_settings.cache_clear()
    yield first
    get_settings.cache_clear()


def rate_cell_of(hits: int, totals: int) -> str:
    interval = wilson_interval(hits, totals)
    return f"{percent(hits / totals)} ({percent(interval.low)}-{percent(interval.high)})"


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["report", *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def lines_of(output: str, version: int) -> tuple[str, str]:
    """The version's row in the health table: its values, and the intervals below them."""
    lines = output.splitlines()
    at = next(
        i
        for i, line in enumerate(lines)
        if line.startswith("│ support") and f"│ {version} │" in line
    )
    return lines[at], lines[at + 1]


@pytest.mark.usefixtures("report_env")
def test_terminal_report_shows_each_version() -> None:
    output = run("--since", "1h")
    (v1, v1_intervals), (v2, _) = lines_of(output, 1), lines_of(output, 2)
    assert "│       100 │" in v1 and "│        40 │" in v2  # the old window is out of range
    refusal = wilson_interval(12, 98)  # 9 + 3 refusals of 88 + 10 answers
    assert f" {100 * 12 / 98:.1f}% │" in v1
    assert f" {percent(refusal.low)}-{percent(refusal.high)} │" in v1_intervals
    errors = wilson_interval(2, 100)
    assert " 2.00% │" in v1
    assert f" {percent(errors.low)}-{percent(errors.high)} │" in v1_intervals
    pii = wilson_interval(3, 98)
    assert " 3.06% │" in v1 and f"{percent(pii.low)}-{percent(pii.high)}" in v1_intervals
    merged = kll_of(FAST + SLOW).get_quantiles([0.5, 0.95, 0.99])  # not per-window averages
    assert f"│ {merged[0]:6,.0f} │ {merged[1]:6,.0f} │ {merged[2]:6,.0f} │" in v1
    assert merged[1] >= 2000  # the slow window's answers are the top 10%
    assert "│           2 │ output_chars" in v1  # two open alerts; toxicity drift is too old
    assert "│           0 │ -" in v2  # its alert was resolved
    email = next(line for line in output.splitlines() if "│ EMAIL" in line)
    assert f"│ 2 │ {rate_cell_of(2, 98)} │" in email.replace("       2 │", " 2 │")
    assert "Trends, 30 steps of 2 min" in output
    lines = output.splitlines()
    trends = next(i for i, line in enumerate(lines) if "Trends, " in line)
    at = next(i for i in range(trends, len(lines)) if lines[i].startswith("│ support │ 1 "))
    assert "▁" in lines[at] and "█" in lines[at]  # p95 of each step: the windows' own
    fast, slow = kll_of(FAST).get_quantile(0.95), kll_of(SLOW).get_quantile(0.95)
    assert f"{fast:,.0f} ms-{slow:,.0f} ms" in lines[at + 1]


@pytest.mark.usefixtures("report_env")
def test_prompt_filter_and_range() -> None:
    assert "support" in run("--prompt", "support")
    line = run("--prompt", "nope", code=1).strip()
    assert line == (
        "error: no quality windows in the last 1h for prompt 'nope': is the metrics worker "
        "running (`llmops up`) and has traffic come in?"
    )
    three_days = run("--since", "3d", "--steps", "6")
    v1, more = lines_of(three_days, 1)
    assert "│       105 │" in v1  # the two-day-old window counts now, and its drift
    assert "output_chars, toxicity" in v1 + more or "toxicity" in more


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.usefixtures("report_env")
def test_html_report_is_self_contained(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    output = run("--html", str(target))
    assert f"wrote {target} (2 prompt versions)" in output.replace("\n", "")
    page = target.read_text(encoding="utf-8")
    parsed = Tags()
    parsed.feed(page)
    for tag, attrs in parsed.tags:
        assert tag not in ("script", "link", "img", "iframe")
        for name, value in attrs.items():
            assert name not in ("src", "href"), (tag, name, value)
            assert "http://" not in (value or "") and "https://" not in (value or "")
    text = " ".join(parsed.text)
    assert "support v1" in text and "support v2" in text
    assert "100 responses in 2 windows, 2 errors" in text
    assert sum(1 for tag, _ in parsed.tags if tag == "svg") == 4
    assert "merged KLL sketches" in text
    assert "PII entity type" in text and "EMAIL" in text


@pytest.mark.usefixtures("report_env")
def test_bad_since_is_one_line() -> None:
    result = CliRunner().invoke(app, ["report", "--since", "yesterday"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: --since 'yesterday': give a duration like 15m, 1h, 2d or 1w"]


def test_no_windows_table_is_one_line(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{store_url}/bare_{uuid.uuid4().hex[:8]}"
    ensure_database(url).close()  # a database without migrations
    monkeypatch.setenv("CLICKHOUSE_URL", url)
    get_settings.cache_clear()
    try:
        line = run(code=1).strip()
    finally:
        get_settings.cache_clear()
    assert line.startswith("error: the store has no quality_windows table: run `llmops migrate`")


def test_store_down_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_URL", f"http://127.0.0.1:{free_port()}/llmops")
    get_settings.cache_clear()
    try:
        lines = [line for line in run(code=1).splitlines() if line.strip()]
    finally:
        get_settings.cache_clear()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach ClickHouse (")


@pytest.mark.usefixtures("report_env")
def test_many_windows_fall_back_to_bounds_then_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.cli import report as module

    monkeypatch.setattr(module, "MAX_SKETCHED_WINDOWS", 2)  # the hour holds 3 windows
    output = run()
    v1, _ = lines_of(output, 1)
    fast = quantiles_of(kll_of(FAST))
    slow = quantiles_of(kll_of(SLOW))
    bounds = [max(fast[i], slow[i]) for i in (0, 2, 3)]  # the largest window p50, p95, p99
    assert f"│ {'≤' + format(bounds[0], ',.0f'):>6} │" in v1
    assert f"≤{bounds[1]:,.0f}" in v1 and f"≤{bounds[2]:,.0f}" in v1
    assert "note: 3 windows: latency shown as upper bounds" in output.replace("\n", " ")
    monkeypatch.setattr(module, "MAX_WINDOWS", 2)
    line = run(code=1).strip()
    assert line == (
        "error: 3 quality windows in the last 1h: more than 2; narrow --since or pick one --prompt"
    )


def test_views_and_report_agree_with_the_real_producer(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows made by the metrics worker's own aggregation (streams.quality), row builder and
    insert: the views and the report say what merge_quality says."""
    from llmops.clickhouse.client import insert_rows
    from streams.features import ResponseFeatures
    from streams.quality import WindowQuality, merge_quality
    from streams.rows import QUALITY_WINDOW_COLUMNS, QUALITY_WINDOWS_TABLE, quality_window_row

    now = datetime.now(UTC)
    starts = [now - timedelta(minutes=12), now - timedelta(minutes=6)]
    windows = []
    for w, start in enumerate(starts):
        quality = WindowQuality()
        for i in range(40):
            signals = {"refusal": float(i % 5 == w), "pii_output": float(i == 7)}
            if i == 7:
                signals["pii_output.EMAIL"] = 1.0
            quality.add(
                ResponseFeatures.model_validate(
                    {
                        "request_id": f"w{w}-{i}",
                        "ts": start + timedelta(seconds=1),
                        "prompt_name": "greet",
                        "prompt_version": 4,
                        "pool": "p1",
                        "model": "m1",
                        "finish_reason": "error" if i == 0 else "stop",
                        "is_error": i == 0,
                        "error_kind": "engine_error" if i == 0 else "",
                        "latency_ms": 100.0 * (w + 1) + i,
                        "signals": signals,
                        "segments": {"locale": "de" if i % 2 else "en"},
                    }
                )
            )
        windows += quality.windows(
            int(start.timestamp() * 1000), 60_000, ("greet", 4, "", "p1", "m1")
        )
    url = f"{store_url}/producer_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    insert_rows(  # as the worker's TableWriter inserts them (Arrow)
        client,
        QUALITY_WINDOWS_TABLE,
        [quality_window_row(w) for w in windows],
        QUALITY_WINDOW_COLUMNS,
    )
    whole = merge_quality([w for w in windows if w.segment == ""])
    hourly = list(
        client.query(
            "SELECT rate, hits, totals FROM quality_rates_hourly WHERE prompt_name = 'greet'"
        ).named_results()
    )
    client.close()
    by_rate: dict[str, tuple[int, int]] = {}
    for row in hourly:  # the two windows may straddle an hour
        hits, totals = by_rate.get(row["rate"], (0, 0))
        by_rate[row["rate"]] = (hits + row["hits"], totals + row["totals"])
    for rate in ("refusal", "pii_output", "pii_output.EMAIL", "error"):
        assert by_rate[rate] == (whole.rate_hits[rate], whole.rate_totals[rate]), rate
    # refusals at i % 5 == w: 7 of window 0's 39 answers (its i=0 is the error), 8 of 1's
    assert by_rate["refusal"] == (15, 78)
    monkeypatch.setenv("CLICKHOUSE_URL", url)
    get_settings.cache_clear()
    try:
        output = run("--prompt", "greet")
    finally:
        get_settings.cache_clear()
    lines = output.splitlines()
    greet = next(line for line in lines if line.startswith("│ greet"))
    p50, _, p95, p99 = whole.quantiles["latency_ms"]
    assert f"│ {p50:6,.0f} │ {p95:6,.0f} │ {p99:6,.0f} │" in greet
    assert "│        80 │" in greet and f" {percent(15 / 78)} │" in greet
