"""Demo traffic: varied requests through the SDK, a summary table, and a check in ClickHouse."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from llmops.clickhouse.client import connect
from llmops.local.demo.report import GroupStats, Outcome, summarize, summarize_by_group
from llmops.sdk import LLMOpsClient, LLMOpsError, ReplyTimeout
from schemas import PromptRequest

QUESTIONS = [
    "How do I reset my password?",
    "Can I change the billing date?",
    "Why is my invoice higher this month?",
    "How do I export my data?",
    "Is there a mobile app?",
]
# Product notes the support prompt answers from: its grounding context.
CONTEXT = (
    "Acme Cloud resets passwords from the sign-in page. Billing dates can be changed once per "
    "month under Settings > Billing. Data exports are CSV or JSON, from Settings > Data. "
    "There is a mobile app for iOS and Android."
)
# Segment attributes the demo declares (Settings.segment_attributes): quality, drift and
# fairness are then reported per locale and per plan as well as per prompt version.
DEMO_SEGMENTS = ("locale", "plan")
# The demo's window (Settings.metrics_window_s, unless configured): results within seconds.
DEMO_WINDOW_S = 10.0
LOCALES = ("en", "de", "fr")
PLANS = ("free", "pro")
TEXTS = [
    "Kafka keeps an ordered log per partition; consumers track offsets.",
    "ClickHouse stores columns apart and compresses them well.",
]


def demo_requests(
    client: LLMOpsClient, count: int, max_tokens: int, seed: int = 7
) -> list[PromptRequest]:
    """A mix: the A/B-tested support prompt (with its grounding context), a plain prompt,
    raw chat messages and a request for a JSON answer, from users of several locales and
    plans."""
    rng = random.Random(seed)
    requests = []
    for i in range(count):
        user = f"user-{rng.randrange(1000)}"
        segments = {"locale": rng.choice(LOCALES), "plan": rng.choice(PLANS)}
        kind = i % 4
        if kind == 0:
            request = client.build_request(
                prompt="support-answer",
                variables={"product": "Acme Cloud", "question": rng.choice(QUESTIONS)},
                max_tokens=max_tokens,
                user_id=user,
                attributes=segments,
                context=CONTEXT,
            )
        elif kind == 1:
            request = client.build_request(
                prompt="summarize",
                variables={"text": rng.choice(TEXTS)},
                max_tokens=max_tokens,
                user_id=user,
            )
        elif kind == 2:
            request = client.build_request(
                [{"role": "user", "content": rng.choice(QUESTIONS)}],
                max_tokens=max_tokens,
                user_id=user,
                attributes=segments,
            )
        else:
            question = rng.choice(QUESTIONS)
            request = client.build_request(
                [{"role": "user", "content": f'Answer as JSON {{"answer": ...}}: {question}'}],
                max_tokens=max_tokens,
                user_id=user,
                attributes=segments,
                response_format="json",
            )
        requests.append(request)
    return requests


@dataclass
class DemoReport:
    outcomes: list[Outcome]
    total: GroupStats
    groups: list[GroupStats]
    rows_in_clickhouse: int
    wall_s: float
    # time.monotonic() when the first reply arrived (None: none did). Not derivable from the
    # latencies: each is timed from its own send, and requests wait for a free slot first.
    first_reply_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.total.replies == self.total.requests and self.rows_in_clickhouse == len(
            self.outcomes
        )


async def _one(
    client: LLMOpsClient, request: PromptRequest, timeout_s: float, gate: asyncio.Semaphore
) -> Outcome:
    async with gate:
        started = time.perf_counter()
        try:
            pending = await client.submit(request)
            result = await client.wait(request.request_id, pending, timeout_s)
            return Outcome(request.request_id, (time.perf_counter() - started) * 1000, result)
        except (ReplyTimeout, LLMOpsError) as exc:
            return Outcome(
                request.request_id, (time.perf_counter() - started) * 1000, None, str(exc)
            )


def count_rows(
    clickhouse_url: str, request_ids: list[str], login: tuple[str, str] | None = None
) -> int:
    client = connect(clickhouse_url, login=login)
    try:
        found = client.query(
            "SELECT uniqExact(request_id) FROM responses WHERE request_id IN {ids:Array(String)}",
            parameters={"ids": request_ids},
        ).result_rows
        return int(found[0][0])
    finally:
        client.close()


async def wait_for_rows(
    clickhouse_url: str,
    request_ids: list[str],
    timeout_s: float,
    login: tuple[str, str] | None = None,
) -> int:
    deadline = time.monotonic() + timeout_s
    rows = 0
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(count_rows, clickhouse_url, request_ids, login)
        if rows >= len(request_ids):
            break
        await asyncio.sleep(0.5)
    return rows


async def run_demo(
    bootstrap: str,
    clickhouse_url: str,
    console: Console,
    *,
    requests: int = 24,
    concurrency: int = 8,
    max_tokens: int = 24,
    timeout_s: float = 300.0,
    rows_timeout_s: float = 60.0,
    clickhouse_login: tuple[str, str] | None = None,
) -> DemoReport:
    """Send demo traffic; check every reply and that its row reached ClickHouse (logging in
    as `clickhouse_login` where the URL names no user)."""
    started = time.perf_counter()
    first_reply_at: float | None = None
    async with LLMOpsClient(bootstrap, app="demo", timeout_s=timeout_s) as client:
        batch = demo_requests(client, requests, max_tokens)
        gate = asyncio.Semaphore(concurrency)
        outcomes: list[Outcome] = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"demo: {requests} requests", total=requests)
            for done in asyncio.as_completed([_one(client, r, timeout_s, gate) for r in batch]):
                outcome = await done
                if first_reply_at is None and outcome.result is not None:
                    first_reply_at = time.monotonic()
                outcomes.append(outcome)
                progress.advance(task)
    wall = time.perf_counter() - started
    answered = [o.request_id for o in outcomes if o.result is not None]
    with console.status("waiting for the rows to reach ClickHouse ..."):
        rows = (
            await wait_for_rows(clickhouse_url, answered, rows_timeout_s, clickhouse_login)
            if answered
            else 0
        )
    return DemoReport(
        outcomes,
        summarize("all", outcomes),
        summarize_by_group(outcomes),
        rows,
        wall,
        first_reply_at,
    )


def timeline(report: DemoReport, started: float, now: float) -> str:
    """When the first reply came and the demo ended, in seconds after `started` (monotonic)."""
    first = (
        "no reply"
        if report.first_reply_at is None
        else f"first reply {report.first_reply_at - started:.1f}s after start"
    )
    return f"{first}; demo done {now - started:.1f}s after start"


# Numbers stay whole (never cut to "…"); the group wraps instead, so 80 columns suffice.
_STATS_COLUMNS = ("req", "ok", "err", "p50", "p95", "p99", "in", "out")


def render_report(report: DemoReport, console: Console) -> None:
    table = Table(
        title=f"demo traffic ({report.wall_s:.1f}s wall)",
        caption="requests, replies, errors; latency ms p50/p95/p99; tokens in/out",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    table.add_column("prompt / variant / pool", overflow="fold", ratio=1, min_width=12)
    for column in _STATS_COLUMNS:
        table.add_column(column, justify="right", no_wrap=True)
    for stats in [*report.groups, report.total]:
        prompt, variant, pool = ([*stats.group.split(" / "), "", ""])[:3]
        group = prompt if not variant else f"{prompt}\n  {variant} · {pool}"
        table.add_row(
            group,
            str(stats.requests),
            str(stats.replies),
            str(stats.errors),
            f"{stats.p50_ms:.0f}",
            f"{stats.p95_ms:.0f}",
            f"{stats.p99_ms:.0f}",
            str(stats.input_tokens),
            str(stats.output_tokens),
            style="bold" if stats.group == "all" else None,
        )
    console.print(table)
    expected = report.total.replies
    ok = report.rows_in_clickhouse == len(report.outcomes)
    mark = "[green]✓[/]" if ok else "[red]✗[/]"
    console.print(
        f"{mark} rows in ClickHouse `responses`: {report.rows_in_clickhouse} of {expected} answered"
    )
