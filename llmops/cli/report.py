"""`llmops report`: the health of each prompt version from the quality windows, in the terminal
(rich tables and sparklines) or as one self-contained HTML file (`--html FILE`).

Numbers roll up the way the windows allow: rates as summed hits over summed totals (with their
Wilson interval), latency percentiles from the windows' KLL sketches merged (never an average
of percentiles). A window without a sketch falls back to the largest window percentile, an
upper bound, and the column says so (`≤`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from llmops.cli.console import console, error_console
from llmops.cli.errors import Mistake
from llmops.config import get_settings

commands = typer.Typer()

# Rates shown per version: (rate name in the windows, column title).
RATES: tuple[tuple[str, str], ...] = (
    ("error", "error"),
    ("refusal", "refusal"),
    ("pii_output", "PII"),
    ("toxic", "toxic"),
    ("unsupported", "unsupported"),
)
LATENCY = "latency_ms"
LATENCY_RANKS = (0.5, 0.95, 0.99)
# Indexes of p50/p95/p99 in a window's quantiles ([p50, p90, p95, p99]).
WINDOW_QUANTILE_INDEX = (0, 2, 3)
PII_TYPE = "pii_output."  # "pii_output.EMAIL": answers holding that entity type
TREND_RATES = {"error": "error", "refusal": "refusal", "pii_output": "PII"}
SPARK_BARS = "▁▂▃▄▅▆▇█"
MAX_SINCE_S = 90 * 86_400
# Window rows one report reads: with their latency sketches (a few KB each) up to
# MAX_SKETCHED_WINDOWS, past that the windows' own percentiles only (bounds), and no more than
# MAX_WINDOWS (about 2 weeks of 60 s windows for 10 groups): narrow --since or --prompt.
MAX_SKETCHED_WINDOWS = 20_000
MAX_WINDOWS = 200_000
MAX_BUCKETS = 120
DEFAULT_BUCKETS = 30
_DURATION = re.compile(r"^\s*(\d{1,7})\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


class NoData(RuntimeError):
    """Nothing to report (no table, no windows): one line, exit code 1."""


# ---------------------------------------------------------------- pure: parsing and math


def parse_since(text: str) -> int:
    """Seconds in a duration like 90s, 15m, 1h, 2d, 1w (1 s to 90 days)."""
    found = _DURATION.match(text)
    if found is None:
        raise Mistake(f"--since {text!r}: give a duration like 15m, 1h, 2d or 1w")
    seconds = int(found.group(1)) * _UNIT_S[found.group(2)]
    if not 1 <= seconds <= MAX_SINCE_S:
        raise Mistake(f"--since {text!r}: must be between 1s and 90d")
    return seconds


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value, scaled between the smallest and the largest; None (or NaN) is a
    gap; a flat series reads flat, at the lowest bar."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    top = len(SPARK_BARS) - 1
    out = []
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(" ")
        elif span == 0:
            out.append(SPARK_BARS[0])
        else:
            out.append(SPARK_BARS[round((value - low) / span * top)])
    return "".join(out)


@dataclass(frozen=True)
class WindowRow:
    """What the report reads of one quality window (segment '': the whole group)."""

    window_start: datetime
    prompt_name: str
    prompt_version: int
    responses: int
    errors: int
    hits: Mapping[str, int]
    totals: Mapping[str, int]
    latency_quantiles: Sequence[float]  # [p50, p90, p95, p99] or []
    latency_sketch: str  # base64 KLL sketch or ""


@dataclass(frozen=True)
class Rate:
    hits: int
    totals: int
    low: float
    high: float

    @property
    def value(self) -> float | None:
        return self.hits / self.totals if self.totals else None


@dataclass(frozen=True)
class Latency:
    """p50, p95, p99 in ms; `exact` False: upper bounds from the windows' own percentiles."""

    p50: float
    p95: float
    p99: float
    exact: bool


@dataclass
class Bucket:
    """A stretch of the report's time range: the sums of its windows."""

    start: datetime
    hits: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    latency: Latency | None = None

    def rate(self, name: str) -> float | None:
        totals = self.totals.get(name, 0)
        return self.hits.get(name, 0) / totals if totals else None


@dataclass
class VersionHealth:
    prompt_name: str
    prompt_version: int
    windows: int
    responses: int
    errors: int
    rates: dict[str, Rate]
    latency: Latency | None
    buckets: list[Bucket]
    open_alerts: int = 0
    drifted_features: list[str] = field(default_factory=list)

    def pii_types(self) -> list[tuple[str, Rate]]:
        """Entity types found in answers, most frequent first: answers that held the type, of
        the answers checked for PII (an entity type's total is pii_output's)."""
        return sorted(
            ((name, rate) for name, rate in self.rates.items() if name.startswith(PII_TYPE)),
            key=lambda item: (-item[1].hits, item[0]),
        )


@dataclass
class Report:
    start: datetime
    end: datetime
    since: str
    prompt: str | None
    versions: list[VersionHealth]
    bucket_s: float
    note: str | None = None  # what the reader should know about how it was computed


LatencyMerger = Callable[[Sequence[str]], tuple[float, float, float] | None]


def sketch_merger() -> LatencyMerger:
    """p50/p95/p99 of the windows' KLL sketches merged (streams.sketches, as merge_quality
    merges them); None for a sketch that cannot be read, so the caller falls back to bounds."""
    from streams.sketches import decode_sketch, merge_sketches

    # Each window's sketch is merged twice (its step, the whole range): decoded once.
    decoded: dict[str, Any] = {}

    def merge(texts: Sequence[str]) -> tuple[float, float, float] | None:
        sketches = []
        for text in texts:
            if text not in decoded:
                try:
                    decoded[text] = decode_sketch(text)
                except ValueError:
                    decoded[text] = None
            if decoded[text] is None:
                return None  # one unreadable sketch: the bound, not a wrong exact figure
            sketches.append(decoded[text])
        merged = merge_sketches(sketches)
        if merged.is_empty():
            return None
        p50, p95, p99 = (float(q) for q in merged.get_quantiles(list(LATENCY_RANKS)))
        return p50, p95, p99

    return merge


def merged_latency(windows: Sequence[WindowRow], merge: LatencyMerger | None) -> Latency | None:
    """Exact (within the sketches' error) when every window with latency has a sketch and a
    merger is at hand; else the largest window p50/p95/p99, an upper bound of each."""
    with_latency = [w for w in windows if w.latency_sketch or len(w.latency_quantiles) >= 4]
    if not with_latency:
        return None
    if merge is not None and all(w.latency_sketch for w in with_latency):
        merged = merge([w.latency_sketch for w in with_latency])
        if merged is not None:
            return Latency(*merged, exact=True)
    bounded = [w.latency_quantiles for w in with_latency if len(w.latency_quantiles) >= 4]
    if not bounded:
        return None
    p50, p95, p99 = (max(q[i] for q in bounded) for i in WINDOW_QUANTILE_INDEX)
    return Latency(p50, p95, p99, exact=False)


def _sum_into(target: dict[str, int], source: Mapping[str, int]) -> None:
    for name, count in source.items():
        target[name] = target.get(name, 0) + int(count)


def _with_errors(counts: Mapping[str, int], row: WindowRow, count: int) -> Mapping[str, int]:
    """A window that carries no "error" rate: its error counts are exact, use them."""
    return counts if "error" in row.totals else {**counts, "error": count}


def summarize(
    windows: Sequence[WindowRow],
    start: datetime,
    end: datetime,
    buckets: int = DEFAULT_BUCKETS,
    merge: LatencyMerger | None = None,
) -> list[VersionHealth]:
    """Per prompt version: summed counts, rates with Wilson intervals, merged latency, and the
    same per bucket of [start, end) for the sparklines. Pure."""
    from llmops.stats.proportions import wilson_interval

    if not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets must be 1..{MAX_BUCKETS}")
    width = max((end - start).total_seconds() / buckets, 1e-3)
    groups: dict[tuple[str, int], list[WindowRow]] = {}
    for window in windows:
        groups.setdefault((window.prompt_name, window.prompt_version), []).append(window)
    out = []
    for (name, version), rows in sorted(groups.items()):
        hits: dict[str, int] = {}
        totals: dict[str, int] = {}
        per_bucket: list[list[WindowRow]] = [[] for _ in range(buckets)]
        for row in rows:
            _sum_into(hits, _with_errors(row.hits, row, row.errors))
            _sum_into(totals, _with_errors(row.totals, row, row.responses))
            index = int((row.window_start - start).total_seconds() // width)
            per_bucket[min(max(index, 0), buckets - 1)].append(row)
        responses = sum(r.responses for r in rows)
        errors = sum(r.errors for r in rows)
        rates = {}
        pii_types = [name for name in hits if name.startswith(PII_TYPE) and hits[name] > 0]
        for rate in [name for name, _ in RATES] + sorted(pii_types):
            n = totals.get("pii_output" if rate.startswith(PII_TYPE) else rate, 0)
            k = min(hits.get(rate, 0), n)
            interval = wilson_interval(k, n)
            rates[rate] = Rate(k, n, interval.low, interval.high)
        series = []
        for i, members in enumerate(per_bucket):
            bucket = Bucket(start + timedelta(seconds=i * width))
            for row in members:
                _sum_into(bucket.hits, _with_errors(row.hits, row, row.errors))
                _sum_into(bucket.totals, _with_errors(row.totals, row, row.responses))
            bucket.latency = merged_latency(members, merge)
            series.append(bucket)
        out.append(
            VersionHealth(
                name,
                version,
                len(rows),
                responses,
                errors,
                rates,
                merged_latency(rows, merge),
                series,
            )
        )
    return out


# ---------------------------------------------------------------- terminal rendering


def percent(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if value < 0.1 else f"{100 * value:.1f}%"


def rate_cell(rate: Rate) -> str:
    if rate.totals == 0:
        return "-"
    return f"{percent(rate.value)} ({percent(rate.low)}-{percent(rate.high)})"


def rate_text(rate: Rate) -> Text:
    """The rate over its Wilson interval (two lines: the table stays narrow)."""
    if rate.totals == 0:
        return Text("-")
    text = Text(percent(rate.value))
    text.append(f"\n{percent(rate.low)}-{percent(rate.high)}", style="dim")
    return text


def latency_cells(latency: Latency | None) -> list[str]:
    if latency is None:
        return ["-", "-", "-"]
    mark = "" if latency.exact else "≤"
    return [f"{mark}{v:,.0f}" for v in (latency.p50, latency.p95, latency.p99)]


def health_table(report: Report) -> Table:
    table = Table(
        title=f"Health per prompt version, last {report.since} "
        f"({report.start:%Y-%m-%d %H:%M} - {report.end:%H:%M} UTC)",
        caption="rates: value over its 95% Wilson interval; latency ms from merged sketches, "
        "≤: upper bound (largest window percentile)",
    )
    table.add_column("prompt")
    table.add_column("v", justify="right")
    table.add_column("responses", justify="right")
    for _, title in RATES:
        table.add_column(title, justify="right")
    for title in ("p50 ms", "p95 ms", "p99 ms"):
        table.add_column(title, justify="right")
    table.add_column("open alerts", justify="right")
    table.add_column("drifted features")
    for health in report.versions:
        alerts = Text(str(health.open_alerts), style="bold red" if health.open_alerts else "")
        table.add_row(
            escape(health.prompt_name or "(none)"),
            str(health.prompt_version),
            f"{health.responses:,}",
            *(rate_text(health.rates[name]) for name, _ in RATES),
            *latency_cells(health.latency),
            alerts,
            escape(", ".join(health.drifted_features) or "-"),
        )
    return table


def trend_table(report: Report) -> Table:
    table = Table(title=f"Trends, {len(report.versions[0].buckets)} steps of {_step(report)}")
    table.add_column("prompt")
    table.add_column("v", justify="right")
    for title in TREND_RATES.values():
        table.add_column(f"{title} rate (min-max)")
    table.add_column("p95 latency (min-max)")
    for health in report.versions:
        cells = []
        for name in TREND_RATES:
            series = [b.rate(name) for b in health.buckets]
            cells.append(_spark_cell(series, percent))
        p95 = [b.latency.p95 if b.latency else None for b in health.buckets]
        cells.append(_spark_cell(p95, lambda v: f"{v:,.0f} ms" if v is not None else "-"))
        table.add_row(escape(health.prompt_name or "(none)"), str(health.prompt_version), *cells)
    return table


def _spark_cell(series: Sequence[float | None], label: Callable[[float | None], str]) -> Text:
    finite = [v for v in series if v is not None]
    text = Text(sparkline(series), style="cyan")
    if finite:
        text.append(f"\n{label(min(finite))}-{label(max(finite))}", style="dim")
    return text


def _step(report: Report) -> str:
    seconds = report.bucket_s
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def pii_table(report: Report) -> Table | None:
    """Entity types found in answers, per version; None when no answer held any."""
    found = [(v, name, rate) for v in report.versions for name, rate in v.pii_types()]
    if not found:
        return None
    table = Table(title="PII in answers by entity type")
    for title in ("prompt", "v", "entity", "answers", "of checked"):
        table.add_column(title, justify="left" if title in ("prompt", "entity") else "right")
    for version, name, rate in found:
        table.add_row(
            escape(version.prompt_name or "(none)"),
            str(version.prompt_version),
            escape(name.removeprefix(PII_TYPE)),
            f"{rate.hits:,}",
            rate_cell(rate),
        )
    return table


def print_report(report: Report) -> None:
    console.print(health_table(report))
    pii = pii_table(report)
    if pii is not None:
        console.print(pii)
    console.print(trend_table(report))
    if report.note:
        console.print(f"[dim]note: {escape(report.note)}[/]")


# ---------------------------------------------------------------- reading the store

WINDOWS_SQL = """
SELECT window_start, prompt_name, prompt_version, responses, errors, rate_hits, rate_totals,
       quantiles['latency_ms'] AS latency_quantiles,
       if({sketched:UInt8} = 1, sketches['latency_ms'], '') AS latency_sketch
FROM quality_windows FINAL
WHERE segment = '' AND window_start >= {start:DateTime64(3, 'UTC')} {prompt_filter}
ORDER BY window_start
LIMIT {limit:UInt32}
"""
COUNT_SQL = """
SELECT count() FROM quality_windows FINAL
WHERE segment = '' AND window_start >= {start:DateTime64(3, 'UTC')} {prompt_filter}
"""
ALERTS_SQL = """
SELECT prompt_name, prompt_version, count() AS open
FROM alerts FINAL
WHERE state = 'open' {prompt_filter}
GROUP BY prompt_name, prompt_version
"""
DRIFT_SQL = """
SELECT prompt_name, prompt_version, arraySort(groupUniqArray(feature)) AS features
FROM drift FINAL
WHERE drifted AND window_start >= {start:DateTime64(3, 'UTC')} {prompt_filter}
GROUP BY prompt_name, prompt_version
"""
PROMPT_FILTER = "AND prompt_name = {prompt:String}"


def _tables(client: Any) -> set[str]:
    result = client.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    return {str(row[0]) for row in result.result_rows}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_report(client: Any, since: str, prompt: str | None, buckets: int, now: datetime) -> Report:
    seconds = parse_since(since)
    end = now
    start = now - timedelta(seconds=seconds)
    tables = _tables(client)
    if "quality_windows" not in tables:
        raise NoData(
            "the store has no quality_windows table: run `llmops migrate` and start the "
            "metrics worker"
        )
    # UTC text (as `llmops alerts` passes it): whatever the client machine's time zone.
    params: dict[str, Any] = {
        "start": start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "limit": MAX_WINDOWS,
    }
    prompt_filter = ""
    if prompt is not None:
        params["prompt"] = prompt
        prompt_filter = PROMPT_FILTER
    count = int(
        client.command(COUNT_SQL.replace("{prompt_filter}", prompt_filter), parameters=params)
    )
    if count > MAX_WINDOWS:
        raise NoData(
            f"{count:,} quality windows in the last {since}: more than {MAX_WINDOWS:,}; "
            "narrow --since or pick one --prompt"
        )
    params["sketched"] = int(count <= MAX_SKETCHED_WINDOWS)
    note = None
    if not params["sketched"]:
        note = (
            f"{count:,} windows: latency shown as upper bounds (largest window percentile), "
            f"sketches are merged up to {MAX_SKETCHED_WINDOWS:,} windows"
        )
    result = client.query(WINDOWS_SQL.replace("{prompt_filter}", prompt_filter), parameters=params)
    windows = [
        WindowRow(
            _utc(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]),
            dict(row[5]), dict(row[6]), list(row[7] or []), str(row[8] or ""),
        )
        for row in result.result_rows
    ]  # fmt: skip
    if not windows:
        scope = f" for prompt {prompt!r}" if prompt is not None else ""
        raise NoData(
            f"no quality windows in the last {since}{scope}: is the metrics worker running "
            "(`llmops up`) and has traffic come in?"
        )
    versions = summarize(windows, start, end, buckets, sketch_merger())
    by_key = {(v.prompt_name, v.prompt_version): v for v in versions}
    if "alerts" in tables:
        found = client.query(
            ALERTS_SQL.replace("{prompt_filter}", prompt_filter), parameters=params
        )
        for name, version, count in found.result_rows:
            if (name, version) in by_key:
                by_key[(name, version)].open_alerts = int(count)
    if "drift" in tables:
        found = client.query(DRIFT_SQL.replace("{prompt_filter}", prompt_filter), parameters=params)
        for name, version, features in found.result_rows:
            if (name, version) in by_key:
                by_key[(name, version)].drifted_features = [str(f) for f in features]
    return Report(start, end, since, prompt, versions, seconds / buckets, note)


@commands.command()
def report(
    since: Annotated[
        str, typer.Option("--since", help="how far back: 15m, 1h, 2d, 1w (at most 90d)")
    ] = "1h",
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="only this prompt's versions")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="write one self-contained HTML file with plots instead"),
    ] = None,
    steps: Annotated[
        int,
        typer.Option("--steps", min=1, max=MAX_BUCKETS, help="points of each sparkline or plot"),
    ] = DEFAULT_BUCKETS,
) -> None:
    """Health of each prompt version: rates with intervals, latency, alerts, drift, trends."""
    from llmops.clickhouse.client import connect_settings

    parse_since(since)  # a usage mistake before any connection
    settings = get_settings()
    client = connect_settings(settings)
    try:
        # On stderr (shown only on a terminal): stdout stays the report alone.
        with error_console.status(f"reading the quality windows of the last {escape(since)}"):
            found = read_report(client, since, prompt, steps, datetime.now(UTC))
    except NoData as exc:
        error_console.print(f"[red]error[/]: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        client.close()
    if html is None:
        print_report(found)
        return
    from llmops.cli.report_html import render_html

    html.write_text(render_html(found), encoding="utf-8")
    console.print(f"[green]✓[/] wrote {escape(str(html))} ({len(found.versions)} prompt versions)")
