"""`llmops`: run the platform, send traffic, query metrics, inspect topics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup
from typer.exceptions import TyperException

from llmops.cli.errors import Mistake, describe, require_kafka
from llmops.config import get_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _OneLineErrors(TyperGroup):
    """Every command's expected failures as one line on stderr and exit code 1 (2 for a usage
    mistake); the traceback only with `llmops --debug ...`."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context (not public)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # typer's own ways out
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            line = describe(exc)
            if line is None:
                line = f"unexpected {type(exc).__name__}: {exc} (`llmops --debug ...` shows where)"
            errors.print(f"[red]error[/]: {escape(line)}", soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, Mistake) else 1) from None


app = typer.Typer(
    cls=_OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    help=__doc__,
    pretty_exceptions_enable=False,
)
# Piped output gets a width that fits the summary tables instead of 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
errors = Console(stderr=True)
# Client libraries that log a connection failure before raising it: the error line says it.
QUIET_LOGGERS = ("clickhouse_connect", "kafka", "aiokafka")


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="show the traceback and library logs of a failure")
    ] = False,
) -> None:
    """`llmops`: run the platform, send traffic, query metrics, inspect topics."""
    if not debug:
        loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)

        def restore() -> None:  # for callers that run commands in process (tests)
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)

        ctx.call_on_close(restore)


@app.command()
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
    from llmops.local.stack import LocalStack

    settings = get_settings()
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
) -> int:
    from llmops.cli.tracing import app_tracing
    from llmops.local.demo.traffic import render_report, run_demo, timeline

    # The app side of each trace: its root spans, to OTEL_* or the embedded receiver.
    with app_tracing("llmops-demo", traces_endpoint):
        report = asyncio.run(run_demo(bootstrap, clickhouse_url, console, requests=requests))
    render_report(report, console)
    if started is not None:
        console.print(timeline(report, started, time.monotonic()))
    if not report.ok:
        console.print("[red]demo failed[/]: unanswered requests or missing rows; see the logs")
        return 1
    return 0


@app.command()
def demo(
    requests: Annotated[int, typer.Option(help="requests to send")] = 24,
) -> None:
    """Send demo traffic to a running platform and check every reply and row."""
    from llmops.cli.tracing import embedded_receiver

    settings = get_settings()
    require_kafka(settings.kafka_bootstrap_servers)
    raise typer.Exit(
        _demo(
            settings.kafka_bootstrap_servers,
            settings.clickhouse_url,
            requests,
            traces_endpoint=embedded_receiver(settings),
        )
    )


@app.command()
def send(
    text: Annotated[str | None, typer.Argument(help="user message (omit with --prompt)")] = None,
    prompt: Annotated[str | None, typer.Option(help="named prompt from the registry")] = None,
    var: Annotated[list[str] | None, typer.Option(help="prompt variable NAME=VALUE")] = None,
    max_tokens: Annotated[int, typer.Option()] = 64,
    stream: Annotated[bool, typer.Option(help="print tokens as they arrive")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the reply")] = 120.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the final result as one JSON line")
    ] = False,
) -> None:
    """Send one request through the SDK and print the reply (first line: its request id,
    for `llmops trace`)."""
    from llmops.cli.tracing import app_tracing, embedded_receiver
    from llmops.sdk import LLMOpsClient

    if (text is None) == (prompt is None):
        raise Mistake("give a message TEXT or --prompt NAME (one of them)")
    variables = _variables(var or [])
    messages = [{"role": "user", "content": text}] if text else None
    settings = get_settings()
    require_kafka(settings.kafka_bootstrap_servers)

    async def go() -> None:
        async with LLMOpsClient(
            settings.kafka_bootstrap_servers, app="cli", timeout_s=timeout
        ) as client:
            request = client.build_request(
                messages,
                prompt=prompt,
                variables=variables,
                max_tokens=max_tokens,
                stream=stream and not as_json,
            )
            if not as_json:
                console.print(f"[dim]request {request.request_id}[/]")
            if request.stream:
                async for piece in client.stream_request(request):
                    console.print(piece, end="", markup=False)
                console.print()
                return
            result = await client.run(request)
            if as_json:
                print(result.model_dump_json(exclude_none=True))
                return
            console.print(result.text, markup=False)
            console.print(
                f"[dim]{result.finish_reason} · {result.usage.input_tokens}+"
                f"{result.usage.output_tokens} tokens · {result.timings.total_ms:.0f} ms · "
                f"pool {result.pool} · variant {result.variant}[/]"
            )

    with app_tracing("llmops-cli", embedded_receiver(settings)):
        asyncio.run(go())


def _variables(pairs: list[str]) -> dict[str, str]:
    variables = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise Mistake(f"--var {pair!r}: give it as NAME=VALUE")
        variables[name] = value
    return variables


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run in the platform's ClickHouse database")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON rows")] = False,
) -> None:
    """Run SQL against ClickHouse (CLICKHOUSE_URL) and print the rows."""
    from llmops.clickhouse.client import connect

    client = connect(get_settings().clickhouse_url)
    try:
        result = client.query(sql)
    finally:
        client.close()
    if as_json:
        for named in result.named_results():
            console.print_json(json.dumps(named, default=str))
        return
    table = Table(*result.column_names)
    for row in result.result_rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)


@app.command()
def migrate() -> None:
    """Create the database named in CLICKHOUSE_URL and apply the migrations (idempotent)."""
    from llmops.clickhouse.client import apply_migrations, ensure_database

    url = get_settings().clickhouse_url
    client = ensure_database(url)
    try:
        applied = apply_migrations(client)
    finally:
        client.close()
    console.print(
        f"[green]✓[/] {len(applied)} migrations applied"
        + (f": {', '.join(applied)}" if applied else "")
    )


@app.command("trace")
def show_trace(
    request_id: Annotated[str, typer.Argument(help="request id whose trace to show")],
) -> None:
    """Show one request's trace, every hop, from the otel_traces table."""
    from llmops.cli.traces import rows_as_dicts, trace_tree
    from llmops.clickhouse.client import connect

    client = connect(get_settings().clickhouse_url)
    try:
        ids = client.query(
            "SELECT DISTINCT TraceId FROM otel_traces "
            "WHERE SpanAttributes['llmops.request_id'] = {rid:String}",
            parameters={"rid": request_id},
        ).result_rows
        if not ids:
            console.print(f"[red]no spans for request {request_id}[/] (exported yet? OTEL_* set?)")
            raise typer.Exit(1)
        for (trace_id,) in ids:
            result = client.query(
                "SELECT * FROM otel_traces WHERE TraceId = {tid:String}",
                parameters={"tid": trace_id},
            )
            tree = trace_tree(rows_as_dicts(result.column_names, result.result_rows))
            console.print(f"[bold]trace {trace_id}[/] ({len(tree.spans)} spans)")
            console.print(tree.render(), markup=False)
    finally:
        client.close()


@app.command()
def pools(
    once: Annotated[bool, typer.Option(help="print one table and exit")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    since: Annotated[
        float, typer.Option(help="also show unconfigured pools heard from this recently (s)")
    ] = 300.0,
) -> None:
    """Show the pools live from their heartbeats: state, cost, load, traffic share."""
    from llmops.cli.pools import watch_pools

    settings = get_settings()
    try:
        asyncio.run(watch_pools(settings, console, once=once, interval_s=interval, since_s=since))
    except KeyboardInterrupt:
        pass
    except (OSError, TimeoutError, LookupError) as exc:
        console.print(
            f"[red]cannot read pool heartbeats from {settings.kafka_bootstrap_servers}[/]: {exc}"
        )
        raise typer.Exit(1) from exc


@app.command()
def topics(
    create: Annotated[bool, typer.Option(help="create the platform's missing topics")] = False,
) -> None:
    """List the broker's topics (and create the platform's with --create)."""
    from llmops.kafka.topics import ensure_topics, list_topics, platform_topics

    settings = get_settings()
    require_kafka(settings.kafka_bootstrap_servers)
    if create:
        created = ensure_topics(
            settings.kafka_bootstrap_servers, platform_topics(p.name for p in settings.pools)
        )
        console.print(f"created: {', '.join(created) or 'nothing (all exist)'}")
    table = Table("topic", "partitions")
    for name, partitions in sorted(list_topics(settings.kafka_bootstrap_servers).items()):
        table.add_row(name, str(partitions))
    console.print(table)


if __name__ == "__main__":
    app()
