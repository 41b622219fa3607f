"""`llmops report --html FILE`: the report as one self-contained HTML file.

Everything is inline (CSS in a <style>, plots as hand-written SVG polylines), nothing is loaded
from anywhere, so the file opens offline and can be mailed or attached to an incident. Every
text from the store (prompt names, features) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape

from llmops.cli.report import (
    PII_TYPE,
    RATES,
    Latency,
    Report,
    VersionHealth,
    latency_cells,
    percent,
    rate_cell,
)

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
COLORS = ("#d62728", "#1f77b4", "#9467bd", "#ff7f0e", "#2ca02c", "#8c564b")
Y_TICKS = 4

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 2rem auto; max-width: 1400px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: right; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; }
td.alert { color: #b00; font-weight: bold; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figcaption { color: #555; font-size: .9rem; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.note { color: #666; font-size: .9rem; }
"""


def _fmt_time(moment: datetime) -> str:
    return f"{moment:%H:%M}"


def _nice_max(value: float) -> float:
    """A round top for the y axis at or above `value` (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10.0 * power


def line_chart(
    title: str,
    times: Sequence[datetime],
    series: Mapping[str, Sequence[float | None]],
    label: Callable[[float], str],
) -> str:
    """An SVG line chart: one polyline per series (broken at gaps, lone points as dots), y from
    0 to a round maximum, a few time labels, a legend."""
    n = len(times)
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    top = _nice_max(max(values, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{escape(title)}</title>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#ccc"/>',
    ]
    for k in range(Y_TICKS + 1):
        v = top * k / Y_TICKS
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{escape(label(v))}</text>'
        )
    for i in sorted({0, n // 2, n - 1}) if n else []:
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{escape(_fmt_time(times[i]))}</text>"
        )
    for points, color in zip(series.values(), COLORS, strict=False):
        for run in _runs(points):
            if len(run) == 1:
                i, v = run[0]
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>')
            else:
                coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
                parts.append(
                    f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8"/>'
                )
    legend_x = LEFT
    for name, color in zip(series, COLORS, strict=False):
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10" fill="{color}"/>'
            f'<text x="{legend_x + 14}" y="{HEIGHT - 5}">{escape(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _runs(points: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive finite points, as (index, value) runs."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, v in enumerate(points):
        if v is None or not math.isfinite(v):
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, v))
    if current:
        runs.append(current)
    return runs


def _health_table(report: Report) -> str:
    heads = ["prompt", "version", "responses", *(t for _, t in RATES)]
    heads += ["p50 ms", "p95 ms", "p99 ms", "open alerts", "drifted features"]
    rows = []
    for v in report.versions:
        cells = [
            f'<td class="name">{escape(v.prompt_name or "(none)")}</td>',
            f"<td>{v.prompt_version}</td>",
            f"<td>{v.responses:,}</td>",
            *(f"<td>{escape(rate_cell(v.rates[name]))}</td>" for name, _ in RATES),
            *(f"<td>{escape(c)}</td>" for c in latency_cells(v.latency)),
            f'<td class="{"alert" if v.open_alerts else ""}">{v.open_alerts}</td>',
            f'<td class="name">{escape(", ".join(v.drifted_features) or "-")}</td>',
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(
        f'<th class="{"name" if h in ("prompt", "drifted features") else ""}">{escape(h)}</th>'
        for h in heads
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _latency_series(v: VersionHealth) -> dict[str, list[float | None]]:
    def pick(get: Callable[[Latency], float]) -> list[float | None]:
        return [get(b.latency) if b.latency else None for b in v.buckets]

    return {
        "p50": pick(lambda lat: lat.p50),
        "p95": pick(lambda lat: lat.p95),
        "p99": pick(lambda lat: lat.p99),
    }


def _pii_types(v: VersionHealth) -> str:
    types = v.pii_types()
    if not types:
        return ""
    rows = "".join(
        f'<tr><td class="name">{escape(name.removeprefix(PII_TYPE))}</td><td>{rate.hits:,}</td>'
        f"<td>{escape(rate_cell(rate))}</td></tr>"
        for name, rate in types
    )
    return (
        '<table><thead><tr><th class="name">PII entity type</th><th>answers</th>'
        f"<th>of checked</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _version_section(v: VersionHealth) -> str:
    times = [b.start for b in v.buckets]
    rates = {title: [b.rate(name) for b in v.buckets] for name, title in RATES}
    name = escape(v.prompt_name or "(none)")
    exact = v.latency is None or v.latency.exact
    return (
        f'<section><h2>{name} v{v.prompt_version}</h2><p class="meta">{v.responses:,} responses'
        f" in {v.windows:,} windows, {v.errors:,} errors</p>"
        '<div class="charts"><figure>'
        + line_chart(f"{v.prompt_name} v{v.prompt_version} rates", times, rates, _pct_label)
        + "<figcaption>rates per step (hits / totals)</figcaption></figure><figure>"
        + line_chart(
            f"{v.prompt_name} v{v.prompt_version} latency",
            times,
            _latency_series(v),
            lambda ms: f"{ms:,.0f} ms",
        )
        + "<figcaption>latency per step, ms ("
        + ("merged KLL sketches" if exact else "upper bounds: largest window percentile")
        + ")</figcaption></figure></div>"
        + _pii_types(v)
        + "</section>"
    )


def _pct_label(value: float) -> str:
    return percent(value) if value else "0%"


def render_html(report: Report) -> str:
    title = "llmops report" + (f": {report.prompt}" if report.prompt else "")
    sections = "".join(_version_section(v) for v in report.versions)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">last {escape(report.since)}: {report.start:%Y-%m-%d %H:%M} - '
        f"{report.end:%Y-%m-%d %H:%M} UTC, {len(report.versions)} prompt versions</p>"
        "<h2>Health per prompt version</h2>" + _health_table(report) + '<p class="note">Rates: '
        "value (95% Wilson interval), summed hits over summed totals. Latency: percentiles of "
        "the windows' merged KLL sketches; ≤ marks an upper bound (the largest window "
        "percentile) where sketches were missing.</p>"
        + (f'<p class="note">{escape(report.note)}</p>' if report.note else "")
        + sections
        + "</body></html>\n"
    )
