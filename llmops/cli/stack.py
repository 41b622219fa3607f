"""`llmops up` and `llmops demo`: run the one-machine platform, and drive it with demo traffic."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Annotated

import typer

from llmops.cli.console import console
from llmops.cli.errors import require_kafka
from llmops.config import Settings, get_settings

commands = typer.Typer()


def _demo_settings(settings: Settings) -> Settings:
    """What the demo shows sooner or in more detail, where the user configured nothing."""
    from llmops.local.demo.traffic import DEMO_SEGMENTS, DEMO_WINDOW_S

    update: dict[str, object] = {}
    if not settings.segment_attributes:
        # The demo's users carry these; quality and fairness are then shown per segment.
        update["segment_attributes"] = list(DEMO_SEGMENTS)
    if "metrics_window_s" not in settings.model_fields_set:
        # A demo's windows show up in seconds, not after the default minute.
        update["metrics_window_s"] = DEMO_WINDOW_S
    return settings.model_copy(update=update) if update else settings


@commands.command()
def up(
    demo: Annotated[bool, typer.Option(help="send demo traffic once the platform is up")] = False,
    demo_requests: Annotated[int, typer.Option(help="demo requests to send")] = 24,
    embedded: Annotated[
        bool,
        typer.Option(help="start the embedded broker and store; --no-embedded uses external ones"),
    ] = True,
    exit_after_demo: Annotated[bool, typer.Option(help="stop everything after the demo")] = False,
) -> None:
    """Start the platform (broker, store, router, pools, metrics worker) until Ctrl-C."""
    from llmops.clickhouse.client import login_for
    from llmops.local.stack import LocalStack

    settings = get_settings()
    if demo:
        settings = _demo_settings(settings)
    stack = LocalStack(settings, console, embedded=embedded)
    started = time.monotonic()
    exit_code = 0
    _stop_on_signals()
    try:
        addresses = stack.start()
        console.print(
            f"[bold green]platform up[/] in {time.monotonic() - started:.1f}s  "
            f"kafka={addresses.kafka}  clickhouse={addresses.clickhouse_url}  "
            f"otlp={addresses.otlp_endpoint or '-'}  logs={stack.log_dir}"
        )
        if demo:
            exit_code = _demo(
                addresses.kafka,
                addresses.clickhouse_url,
                demo_requests,
                started,
                traces_endpoint=addresses.otlp_endpoint,
                clickhouse_login=login_for(addresses.clickhouse_url, settings),
            )
            if exit_after_demo:
                return
        console.print("running; Ctrl-C stops every process")
        while True:
            stack.watch()
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print()
    finally:
        # A second Ctrl-C must not cut the orderly stop short and orphan children.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        if exit_code:
            raise typer.Exit(exit_code)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _stop_on_signals() -> None:
    # Installed explicitly: a shell starting us in the background leaves SIGINT ignored,
    # and SIGTERM (kill, container stop) must stop the children cleanly too.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _demo(
    bootstrap: str,
    clickhouse_url: str,
    requests: int,
    started: float | None = None,
    traces_endpoint: str | None = None,
    clickhouse_login: tuple[str, str] | None = None,
) -> int:
    from llmops.cli.tracing import app_tracing
    from llmops.local.demo.traffic import render_report, run_demo, timeline

    # The app side of each trace: its root spans, to OTEL_* or the embedded receiver.
    with app_tracing("llmops-demo", traces_endpoint):
        report = asyncio.run(
            run_demo(
                bootstrap,
                clickhouse_url,
                console,
                requests=requests,
                clickhouse_login=clickhouse_login,
            )
        )
    render_report(report, console)
    if started is not None:
        console.print(timeline(report, started, time.monotonic()))
    if not report.ok:
        console.print("[red]demo failed[/]: unanswered requests or missing rows; see the logs")
        return 1
    return 0


@commands.command()
def demo(
    requests: Annotated[int, typer.Option(help="requests to send")] = 24,
) -> None:
    """Send demo traffic to a running platform and check every reply and row."""
    from llmops.cli.tracing import embedded_receiver
    from llmops.clickhouse.client import login_for

    settings = get_settings()
    require_kafka(settings.kafka_bootstrap_servers)
    raise typer.Exit(
        _demo(
            settings.kafka_bootstrap_servers,
            settings.clickhouse_url,
            requests,
            traces_endpoint=embedded_receiver(settings),
            clickhouse_login=login_for(settings.clickhouse_url, settings),
        )
    )
