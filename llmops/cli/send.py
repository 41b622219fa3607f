"""`llmops send`: one request through the SDK, its reply printed (or streamed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Annotated

import typer

from llmops.cli.console import console
from llmops.cli.errors import Mistake, require_kafka
from llmops.cli.refs import parse_ref
from llmops.config import get_settings

commands = typer.Typer()


@commands.command()
def send(
    text: Annotated[str | None, typer.Argument(help="user message (omit with --prompt)")] = None,
    prompt: Annotated[
        str | None, typer.Option(help="named prompt: NAME, NAME@VERSION or NAME@LABEL")
    ] = None,
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
        raise Mistake("give a message TEXT or --prompt NAME[@VERSION|@LABEL] (one of them)")
    variables = parse_variables(var or [])
    address = parse_ref(prompt) if prompt is not None else None
    name = address.name if address is not None else None
    version = address.version if address is not None else None
    label = address.label if address is not None else None
    messages = [{"role": "user", "content": text}] if text else None
    settings = get_settings()
    require_kafka(settings.kafka_bootstrap_servers)

    async def go() -> None:
        async with LLMOpsClient.from_settings(settings, app="cli", timeout_s=timeout) as client:
            request = client.build_request(
                messages,
                prompt=name,
                version=version,
                label=label,
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


def parse_variables(pairs: Iterable[str]) -> dict[str, str]:
    """`--var NAME=VALUE` options as a mapping (the value may hold `=`; a later NAME wins)."""
    variables = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise Mistake(f"--var {pair!r}: give it as NAME=VALUE")
        variables[name] = value
    return variables
