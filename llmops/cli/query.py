"""`llmops query` and `llmops migrate`: SQL against the platform's ClickHouse database."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from llmops.cli.console import console
from llmops.config import get_settings

commands = typer.Typer()


@commands.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run in the platform's ClickHouse database")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON rows")] = False,
) -> None:
    """Run SQL against ClickHouse (CLICKHOUSE_URL) and print the rows."""
    from llmops.clickhouse.client import connect_settings

    settings = get_settings()
    client = connect_settings(settings)
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


@commands.command()
def migrate() -> None:
    """Create the database named in CLICKHOUSE_URL and apply the migrations (idempotent)."""
    from llmops.clickhouse.client import login_for
    from llmops.clickhouse.client import migrate as migrate_store

    settings = get_settings()
    url = settings.clickhouse_url
    applied = migrate_store(url, login=login_for(url, settings))
    console.print(
        f"[green]✓[/] {len(applied)} migrations applied"
        + (f": {', '.join(applied)}" if applied else "")
    )
