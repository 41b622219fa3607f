"""`llmops trace <id>`: one request's trace, every hop, from the `otel_traces` table.

The tree (`trace_tree`) is pure, no IO: e2e tests use it too (did every hop join the trace?).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from llmops.cli.console import console
from llmops.config import get_settings

commands = typer.Typer()

# Columns `trace_tree` reads; select them (FINAL collapses re-sent duplicates) with:
TRACE_QUERY = (
    "SELECT SpanId, ParentSpanId, SpanName, ServiceName, SpanKind, Timestamp, Duration, "
    "StatusCode FROM otel_traces FINAL WHERE TraceId = {trace_id:String} ORDER BY Timestamp"
)
TRACE_COLUMNS = (
    "SpanId",
    "ParentSpanId",
    "SpanName",
    "ServiceName",
    "SpanKind",
    "Timestamp",
    "Duration",
    "StatusCode",
)


@dataclass
class SpanNode:
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: str
    start: Any  # int ns or datetime: whatever the rows carry; only compared with its kind
    duration_ns: int
    status: str
    children: list[SpanNode] = field(default_factory=list)

    def describe(self) -> str:
        status = "" if self.status in ("Unset", "Ok", "") else f" {self.status}"
        return f"{self.service}: {self.name} [{self.kind}] {self.duration_ns / 1e6:.2f} ms{status}"

    def walk(self, depth: int = 0) -> Iterator[tuple[int, SpanNode]]:
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass
class TraceTree:
    spans: dict[str, SpanNode]
    roots: list[SpanNode]
    # Spans whose parent id names a span that is not in the trace (lost or not yet flushed).
    orphans: list[SpanNode]
    # Spans on a parent cycle (never reachable from a root): corrupt ids.
    cyclic: list[SpanNode]

    def problems(self) -> list[str]:
        found = [
            f"span {o.span_id} ({o.service}: {o.name}) has missing parent {o.parent_span_id}"
            for o in self.orphans
        ]
        found += [f"span {c.span_id} ({c.service}: {c.name}) is on a cycle" for c in self.cyclic]
        if len(self.roots) != 1:
            found.append(f"expected one root span, found {len(self.roots)}")
        return found

    def is_connected(self) -> bool:
        """True when every span descends from a single root."""
        return not self.problems()

    def walk(self) -> Iterator[tuple[int, SpanNode]]:
        """Depth-first from each root (then each orphan), children in start order."""
        for top in [*self.roots, *self.orphans]:
            yield from top.walk()

    def path_to(self, span_id: str) -> list[SpanNode]:
        """Root-first chain of spans ending at `span_id` (empty if unknown)."""
        chain: list[SpanNode] = []
        node = self.spans.get(span_id)
        while node is not None and node not in chain:
            chain.append(node)
            node = self.spans.get(node.parent_span_id)
        return chain[::-1]

    def render(self) -> str:
        lines = [f"{'  ' * depth}{node.describe()}" for depth, node in self.walk()]
        lines += [f"! {problem}" for problem in self.problems()]
        return "\n".join(lines)


def _node(row: Mapping[str, Any]) -> SpanNode:
    return SpanNode(
        span_id=str(row["SpanId"]),
        parent_span_id=str(row.get("ParentSpanId") or ""),
        name=str(row.get("SpanName", "")),
        service=str(row.get("ServiceName", "")),
        kind=str(row.get("SpanKind", "")),
        start=row.get("Timestamp", 0),
        duration_ns=int(row.get("Duration", 0)),
        status=str(row.get("StatusCode", "")),
    )


def trace_tree(rows: Iterable[Mapping[str, Any]]) -> TraceTree:
    """Build the tree of one trace; a span id seen twice (a re-sent batch) counts once."""
    spans: dict[str, SpanNode] = {}
    for row in rows:
        node = _node(row)
        spans.setdefault(node.span_id, node)
    roots: list[SpanNode] = []
    orphans: list[SpanNode] = []
    for node in spans.values():
        if not node.parent_span_id:
            roots.append(node)
        elif node.parent_span_id in spans:
            spans[node.parent_span_id].children.append(node)
        else:
            orphans.append(node)
    for node in spans.values():
        node.children.sort(key=lambda n: n.start)
    reachable = {n.span_id for top in [*roots, *orphans] for _, n in top.walk()}
    cyclic = [n for n in spans.values() if n.span_id not in reachable]
    return TraceTree(spans=spans, roots=roots, orphans=orphans, cyclic=cyclic)


def rows_as_dicts(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[dict[str, Any]]:
    """Zip a query's column names with its row tuples."""
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in rows]


@commands.command("trace")
def show_trace(
    request_id: Annotated[str, typer.Argument(help="request id whose trace to show")],
) -> None:
    """Show one request's trace, every hop, from the otel_traces table."""
    from llmops.clickhouse.client import connect_settings

    settings = get_settings()
    client = connect_settings(settings)
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
