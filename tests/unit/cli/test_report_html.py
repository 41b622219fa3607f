"""`llmops report --html`: one self-contained file (nothing loaded from anywhere), the prompt
versions and their numbers in it, plots as inline SVG, the store's text escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from llmops.cli.report import Report, WindowRow, summarize
from llmops.cli.report_html import _runs, line_chart, render_html
from streams.sketches import encode_sketch, kll_of

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def window(minute: int, prompt: str, version: int, refusals: int, latency: float) -> WindowRow:
    return WindowRow(
        START + timedelta(minutes=minute),
        prompt,
        version,
        100,
        1,
        {"refusal": refusals, "error": 1},
        {"refusal": 99, "pii_output": 99, "error": 100},
        [],
        encode_sketch(kll_of([latency] * 99)),
    )


def report(prompt: str = "support") -> Report:
    windows = [window(m, prompt, 1, m // 10, 100.0 + m) for m in range(0, 60, 5)]
    windows += [window(m, "summarize", 2, 0, 50.0) for m in (0, 50)]
    from llmops.cli.report import sketch_merger

    versions = summarize(windows, START, END, buckets=12, merge=sketch_merger())
    versions[-1].open_alerts = 1
    versions[-1].drifted_features = ["output_chars"]
    return Report(START, END, "1h", None, versions, 300.0)


def parse(page: str) -> Parsed:
    parsed = Parsed()
    parsed.feed(page)
    parsed.close()
    return parsed


def test_nothing_is_loaded_from_anywhere() -> None:
    page = render_html(report())
    parsed = parse(page)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    for tag, attrs in parsed.tags:
        for name, value in attrs.items():
            if name in ("src", "href", "xlink:href", "srcset", "action", "data"):
                raise AssertionError(f"<{tag} {name}={value!r}> loads something")
            assert "http://" not in (value or "") and "https://" not in (value or "")
    style = "".join(parsed.text)
    assert "@import" not in style and "url(" not in style
    assert "http://" not in page and "https://" not in page


def test_versions_numbers_and_plots_are_in_the_page() -> None:
    page = render_html(report())
    parsed = parse(page)
    text = " ".join(parsed.text)
    assert "support v1" in text and "summarize v2" in text
    svgs = [attrs for tag, attrs in parsed.tags if tag == "svg"]
    assert len(svgs) == 4  # rates and latency for each version
    polylines = [attrs["points"] for tag, attrs in parsed.tags if tag == "polyline"]
    assert polylines and all(re.fullmatch(r"[\d., ]+", p or "") for p in polylines)
    # support: 12 windows of 100 responses; refusals 0..5 of 99 per window: 30 of 1188
    assert "1,200 responses in 12 windows, 12 errors" in text
    assert "2.53% (1.77%-3.58%)" in text  # Wilson 95% of 30 in 1,188
    assert "output_chars" in text
    assert "merged KLL sketches" in text


def test_store_text_is_escaped() -> None:
    page = render_html(report(prompt='<script>alert("x")</script>'))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; v1" in page
    assert not [tag for tag, _ in parse(page).tags if tag == "script"]


def test_chart_breaks_lines_at_gaps() -> None:
    assert _runs([1.0, None, 2.0, 3.0, float("nan"), 4.0]) == [
        [(0, 1.0)],
        [(2, 2.0), (3, 3.0)],
        [(5, 4.0)],
    ]
    times = [START + timedelta(minutes=i) for i in range(4)]
    svg = line_chart("t", times, {"a": [0.1, None, 0.3, 0.2], "b": [None] * 4}, str)
    parsed = parse(svg)
    assert [t for t, _ in parsed.tags].count("polyline") == 1  # points 2-3
    assert [t for t, _ in parsed.tags].count("circle") == 1  # point 0 alone
    empty = line_chart("t", [], {"a": []}, str)
    assert empty.startswith("<svg") and empty.endswith("</svg>")
