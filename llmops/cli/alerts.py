"""`llmops alerts`: the quality monitor's alerts, live from ClickHouse, and followed on llm.alerts.

The `alerts` table holds one row per alert id (ReplacingMergeTree: a resolution replaces its
opening), so `FINAL` gives each alert's current state. `--follow` then tails llm.alerts and
prints each opening and resolution as it arrives. Building the query, reading `--since` and
rendering are pure; only `list_alerts` and `follow_alerts` do IO.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from llmops.cli.console import console, error_console
from llmops.cli.errors import Mistake, require_kafka
from llmops.config import Settings, get_settings
from streams.rows import ALERT_COLUMNS

if TYPE_CHECKING:
    from schemas.monitoring import Alert


commands = typer.Typer()

# What the listing reads of an alert row: all but the ids of its event and its request.
COLUMNS = tuple(c for c in ALERT_COLUMNS if c not in ("event_id", "request_id"))
MAX_LIMIT = 10_000
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
# Evidence worth a column, in this order; the rest follow until the column is full.
KEY_EVIDENCE = (
    "statistic",
    "value",
    "threshold",
    "p_adjusted",
    "rate",
    "reference_rate",
    "hits",
    "responses",
    "reference",
)
EVIDENCE_WIDTH = 80
# Records on llm.alerts this much older than the listing are history it already showed.
FOLLOW_OVERLAP = timedelta(minutes=1)
MAX_SEEN = 100_000
STOP_WAIT_S = 5.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `2h`, `7d`, `1w` before `now`, or an ISO time (UTC unless it says)."""
    spec = text.strip()
    found = _DURATION.fullmatch(spec)
    if found:
        seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
        if seconds > 3650 * 86400:
            raise Mistake(f"--since {text!r}: at most ten years back")
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(spec)
    except ValueError:
        raise Mistake(
            f"--since {text!r}: expected a duration (30m, 2h, 7d) or an ISO time (2026-12-01T09:00)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def alerts_query(
    *, include_resolved: bool, since: datetime | None, limit: int
) -> tuple[str, dict[str, Any]]:
    """The current state of each alert: open ones (all with `include_resolved`), opened or
    resolved since `since`, open first, most severe first, newest first."""
    conditions = [] if include_resolved else ["state = 'open'"]
    parameters: dict[str, Any] = {"limit": limit}
    if since is not None:
        conditions.append(
            "(coalesce(opened_at, ts) >= {since:DateTime64(3, 'UTC')} "
            "OR (state = 'resolved' AND ts >= {since:DateTime64(3, 'UTC')}))"
        )
        parameters["since"] = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    sql = (
        f"SELECT {', '.join(COLUMNS)} FROM alerts FINAL {where}"
        "ORDER BY state = 'open' DESC, "
        "multiIf(severity = 'critical', 0, severity = 'warning', 1, 2), "
        "coalesce(opened_at, ts) DESC, alert_id "
        "LIMIT {limit:UInt32}"
    )
    return sql, parameters


def key_evidence(evidence: Mapping[str, Any], width: int = EVIDENCE_WIDTH) -> str:
    """The evidence that says most in one short line: `statistic=psi value=0.31 ...`."""
    keys = [k for k in KEY_EVIDENCE if evidence.get(k) not in (None, "")]
    keys += sorted(k for k in evidence if k not in KEY_EVIDENCE and evidence[k] not in (None, ""))
    line = " ".join(f"{key}={evidence[key]}" for key in keys)
    return line if len(line) <= width else line[: width - 1] + "…"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return f"{moment:%Y-%m-%d %H:%M:%S}"
    return "-" if value is None else str(value)


def opened(row: Mapping[str, Any]) -> str:
    return _when(row.get("opened_at") or row.get("ts"))


def _severity(severity: str) -> str:
    return f"[{SEVERITY_STYLE.get(severity, 'default')}]{escape(severity)}[/]"


def alerts_table(rows: Sequence[Mapping[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("severity", "kind", "rule"):
        table.add_column(column, no_wrap=True)
    table.add_column("subject", overflow="fold", min_width=16)
    table.add_column("opened (UTC)", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("key evidence", overflow="fold", min_width=16)
    for row in rows:
        state = str(row["state"])
        table.add_row(
            _severity(str(row["severity"])),
            escape(str(row["kind"])),
            escape(str(row["rule"])),
            escape(str(row["subject"])),
            opened(row),
            escape(state) if state == "open" else f"[green]{escape(state)}[/]",
            escape(key_evidence(row.get("evidence") or {})),
        )
    return table


def alert_line(row: Mapping[str, Any]) -> Text:
    """One alert as it arrives (--follow): when, state, severity, rule, subject, evidence."""
    state = str(row["state"])
    line = Text()
    line.append(_when(row.get("ts")) + " ")
    line.append(f"{state:<8} ", style="green" if state == "resolved" else "bold")
    line.append(f"{row['severity']:<8} ", style=SEVERITY_STYLE.get(str(row["severity"]), ""))
    line.append(f"{row['kind']}/{row['rule']}  {row['subject']}")
    evidence = key_evidence(row.get("evidence") or {})
    if evidence:
        line.append("  " + evidence, style="dim")
    return line


def json_line(row: Mapping[str, Any]) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return moment.astimezone(UTC).isoformat()
        return value

    return json.dumps({key: plain(value) for key, value in row.items()}, ensure_ascii=False)


def alert_row(alert: Alert) -> dict[str, Any]:
    """A record of llm.alerts as the table's row."""
    values = alert.model_dump()
    return {column: values.get(column) for column in COLUMNS}


def list_alerts(
    settings: Settings, *, include_resolved: bool, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    from llmops.clickhouse.client import connect_settings

    client = connect_settings(settings)
    try:
        sql, parameters = alerts_query(include_resolved=include_resolved, since=since, limit=limit)
        result = client.query(sql, parameters=parameters)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    finally:
        client.close()


class SeenAlerts:
    """(alert id, state) pairs already shown, the oldest forgotten past `limit` (pure)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = (), limit: int = MAX_SEEN) -> None:
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        for row in rows:
            self.first_time(row)

    def first_time(self, row: Mapping[str, Any]) -> bool:
        key = (str(row["alert_id"]), str(row["state"]))
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return True


def is_new(alert: Alert, listed_at: datetime, since: datetime | None) -> bool:
    """A record of llm.alerts worth showing after a listing made at `listed_at`."""
    if alert.ts < listed_at - FOLLOW_OVERLAP:
        return False
    return since is None or alert.ts >= since


async def follow_alerts(
    settings: Settings,
    show: Callable[[dict[str, Any]], None],
    *,
    listed_at: datetime,
    seen: SeenAlerts,
    since: datetime | None = None,
    on_caught_up: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Tail llm.alerts and `show` each opening or resolution not shown yet, until `stop`."""
    from pydantic import ValidationError

    from llmops.kafka.record import Record
    from llmops.kafka.security import KafkaSecurity
    from llmops.kafka.tail import TopicTail
    from schemas.monitoring import Alert
    from schemas.topics import ALERTS

    def on_record(record: Record) -> None:
        try:
            alert = Alert.from_bytes(record.value or b"")
        except ValidationError:
            return  # not an alert: the producer's to answer for, not the reader's
        row = alert_row(alert)
        if is_new(alert, listed_at, since) and seen.first_time(row):
            show(row)

    tail = TopicTail(
        settings.kafka_bootstrap_servers,
        ALERTS.name,
        on_record,
        client_id="llmops-cli-alerts",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        fetch_idle_wait_ms=settings.fetch_idle_wait_ms,
        security=KafkaSecurity.from_settings(settings),
    )
    reading = asyncio.create_task(tail.run())
    waits = {reading, asyncio.create_task(tail.caught_up.wait())}
    stopping = asyncio.create_task((stop or asyncio.Event()).wait())
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if tail.caught_up.is_set() and on_caught_up is not None:
            on_caught_up()
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if reading.done():
            reading.result()  # raises what stopped the reader
    finally:
        for task in (*waits, stopping):
            if task is not reading:
                task.cancel()
        tail.stop()
        await asyncio.wait({reading}, timeout=STOP_WAIT_S)
        if not reading.done():
            reading.cancel()
            await asyncio.wait({reading}, timeout=STOP_WAIT_S)


@commands.command("alerts")
def alerts(
    show_all: Annotated[
        bool, typer.Option("--all", help="resolved alerts too (default: open ones only)")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="only alerts opened or resolved since: 30m, 2h, 7d or an ISO time"),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="then print each opening and resolution as it arrives"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LIMIT, help="at most this many alerts listed")
    ] = 500,
) -> None:
    """List the quality monitor's alerts (drift, safety, fairness) from ClickHouse."""
    settings = get_settings()
    now = datetime.now(UTC)
    since_at = parse_since(since, now) if since is not None else None
    if follow:
        require_kafka(settings.kafka_bootstrap_servers)
    rows = list_alerts(settings, include_resolved=show_all, since=since_at, limit=limit)
    if as_json:
        for row in rows:
            typer.echo(json_line(row))
    elif rows:
        which = "alerts" if show_all else "open alerts"
        console.print(alerts_table(rows, f"{len(rows)} {which} at {now:%H:%M:%S} UTC"))
        if len(rows) == limit:
            console.print(f"[dim]first {limit} shown; --limit for more[/]")
    else:
        console.print("no alerts" if show_all else "no open alerts")
    if not follow:
        return

    def show(row: dict[str, Any]) -> None:
        if as_json:
            typer.echo(json_line(row))
        else:
            console.print(alert_line(row), soft_wrap=True)

    def following() -> None:
        error_console.print("[dim]following llm.alerts (Ctrl-C to stop)[/]")

    async def follow_until_signalled() -> None:
        # Ctrl-C (or SIGTERM) sets `stop`: the tail stops reading and closes its consumer in
        # order. Without this asyncio.run cancels the consumer mid-operation, and aiokafka's
        # close after such a cancel could hang the command instead of ending it.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await follow_alerts(
            settings,
            show,
            listed_at=now,
            seen=SeenAlerts(rows),
            since=since_at,
            on_caught_up=following,
            stop=stop,
        )

    try:
        asyncio.run(follow_until_signalled())
    except KeyboardInterrupt:
        pass
    except LookupError as exc:  # llm.alerts missing: the platform's topics were never made
        error_console.print(f"[red]error[/]: {escape(str(exc))} (`llmops topics --create`?)")
        raise typer.Exit(1) from None
