"""`llmops pools`: the pools as their heartbeats show them, in a table that refreshes.

States come from the same PoolBoard the router routes with (so `dead`, `open`, `saturated`
mean here what they mean to the router). Traffic share is each pool's share of the requests
finished per second over the pools shown, from the heartbeats' rolling windows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from llmops.cli.console import console as stdout
from llmops.config import Settings, get_settings
from schemas import PoolStatus, utc_now
from schemas.topics import POOL_STATUS
from services.router.choice import PoolState, PoolView, cost_rank

STATE_STYLE: dict[PoolState, str] = {
    "up": "green",
    "saturated": "yellow",
    "half_open": "yellow",
    "starting": "cyan",
    "stopping": "cyan",
    "recovering": "cyan",
    "unknown": "dim",
    "open": "red",
    "unhealthy": "red",
    "dead": "bold red",
}
CATCH_UP_TIMEOUT_S = 15.0
STOP_WAIT_S = 5.0

commands = typer.Typer()


@commands.command()
def pools(
    once: Annotated[bool, typer.Option(help="print one table and exit")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    since: Annotated[
        float, typer.Option(help="also show unconfigured pools heard from this recently (s)")
    ] = 300.0,
) -> None:
    """Show the pools live from their heartbeats: state, cost, load, traffic share."""
    settings = get_settings()
    try:
        asyncio.run(watch_pools(settings, stdout, once=once, interval_s=interval, since_s=since))
    except KeyboardInterrupt:
        pass
    except (OSError, TimeoutError, LookupError) as exc:
        stdout.print(
            f"[red]cannot read pool heartbeats from {settings.kafka_bootstrap_servers}[/]: {exc}"
        )
        raise typer.Exit(1) from exc


def shown(views: Sequence[PoolView], since_s: float) -> list[PoolView]:
    """Configured pools always; others only while they beat within `since_s`."""
    return [v for v in views if v.configured or (v.age_s is not None and v.age_s <= since_s)]


def traffic_shares(views: Sequence[PoolView]) -> dict[str, float]:
    total = sum(v.requests_per_s for v in views)
    return {v.name: (v.requests_per_s / total if total else 0.0) for v in views}


def pools_table(views: Sequence[PoolView], now: datetime) -> Table:
    table = Table(title=f"pools at {now:%H:%M:%S} UTC", title_justify="left")
    # Names and numbers never wrap or shrink; the explanation takes what width is left.
    for column in ("pool", "state", "where", "gpu"):
        table.add_column(column, no_wrap=True)
    for column in ("$/1k tok", "$/GPU-h", "cap", "in flight", "queue", "tok/s", "req/s"):
        table.add_column(column, justify="right", no_wrap=True)
    for column in ("err %", "p50/p99 ms", "share", "beat"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("why", overflow="fold", min_width=12)
    ordered = sorted(views, key=cost_rank)
    shares = traffic_shares(ordered)
    for v in ordered:
        style = STATE_STYLE[v.state]
        table.add_row(
            v.name,
            f"[{style}]{v.state}[/]",
            f"{v.provider}/{v.region}",
            v.gpu,
            f"{v.cost_per_1k_tokens:g}",
            f"{v.cost_per_gpu_hour:g}",
            str(v.capacity),
            str(v.in_flight),
            str(v.queue_depth),
            f"{v.tokens_per_s:.1f}",
            f"{v.requests_per_s:.2f}",
            f"{v.error_rate * 100:.1f}",
            f"{v.latency_p50_ms:.0f}/{v.latency_p99_ms:.0f}",
            f"{shares[v.name] * 100:.0f}%",
            "never" if v.age_s is None else f"{v.age_s:.1f}s ago",
            v.why,
        )
    return table


async def watch_pools(
    settings: Settings,
    console: Console,
    *,
    once: bool,
    interval_s: float = 1.0,
    since_s: float = 300.0,
) -> None:
    """Read llm.pools.status to its end, then print once or refresh until interrupted."""
    # Imported here: the Kafka client and the board cost every other command's start-up.
    from llmops.kafka.record import Record
    from llmops.kafka.security import KafkaSecurity
    from llmops.kafka.tail import TopicTail
    from services.router.board import PoolBoard

    board = PoolBoard(settings.pools, settings.routing, utc_now(), follow_unconfigured=True)

    def observe(record: Record) -> None:
        with contextlib.suppress(ValueError):  # a bad beat is the router's to dead-letter
            board.observe(PoolStatus.model_validate_json(record.value or b""), utc_now())

    tail = TopicTail(
        settings.kafka_bootstrap_servers,
        POOL_STATUS.name,
        observe,
        client_id="llmops-cli-pools",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        fetch_idle_wait_ms=settings.fetch_idle_wait_ms,
        security=KafkaSecurity.from_settings(settings),
    )
    reading = asyncio.create_task(tail.run())
    try:
        caught_up = asyncio.create_task(tail.caught_up.wait())
        await asyncio.wait(
            {reading, caught_up}, timeout=CATCH_UP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        caught_up.cancel()
        if reading.done():
            reading.result()  # raises what stopped the reader
        if not tail.caught_up.is_set():
            raise TimeoutError(
                f"could not read {POOL_STATUS.name} within {CATCH_UP_TIMEOUT_S:.0f}s"
            )
        board.mark_live(utc_now())

        def render() -> Table:
            now = utc_now()
            return pools_table(shown(board.views(now), since_s), now)

        if once:
            console.print(render())
            return
        with Live(render(), console=console, refresh_per_second=4) as live:
            while not reading.done():
                await asyncio.sleep(interval_s)
                live.update(render())
    finally:
        tail.stop()
        await asyncio.wait({reading}, timeout=STOP_WAIT_S)
        if not reading.done():
            reading.cancel()
            await asyncio.wait({reading}, timeout=STOP_WAIT_S)
