"""`llmops topics`: the broker's topics, and the platform's created when missing."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llmops.cli.console import console
from llmops.cli.errors import require_kafka
from llmops.config import get_settings

commands = typer.Typer()


@commands.command()
def topics(
    create: Annotated[bool, typer.Option(help="create the platform's missing topics")] = False,
) -> None:
    """List the broker's topics (and create the platform's with --create)."""
    from llmops.kafka.security import KafkaSecurity
    from llmops.kafka.topics import ensure_topics, list_topics, platform_topics

    settings = get_settings()
    require_kafka(settings.kafka_bootstrap_servers)
    security = KafkaSecurity.from_settings(settings)
    if create:
        created = ensure_topics(
            settings.kafka_bootstrap_servers,
            platform_topics(p.name for p in settings.pools),
            replication_factor=settings.topic_replication_factor,
            security=security,
        )
        console.print(f"created: {', '.join(created) or 'nothing (all exist)'}")
    table = Table("topic", "partitions")
    for name, partitions in sorted(
        list_topics(settings.kafka_bootstrap_servers, security=security).items()
    ):
        table.add_row(name, str(partitions))
    console.print(table)
