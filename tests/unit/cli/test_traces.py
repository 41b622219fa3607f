"""Parent-child structure of one trace from its otel_traces rows."""

from __future__ import annotations

from typing import Any

from llmops.cli.traces import TRACE_COLUMNS, rows_as_dicts, trace_tree


def row(
    span: str, parent: str = "", start: int = 0, service: str = "svc", **extra: Any
) -> dict[str, Any]:
    return {
        "SpanId": span,
        "ParentSpanId": parent,
        "SpanName": f"op-{span}",
        "ServiceName": service,
        "SpanKind": "Internal",
        "Timestamp": start,
        "Duration": 2_000_000,
        "StatusCode": "Unset",
        **extra,
    }


def test_a_connected_trace() -> None:
    tree = trace_tree(
        [
            row("c2", "a", start=3),
            row("a", start=0),
            row("c1", "a", start=1),
            row("g", "c1", start=2),
        ]
    )
    assert tree.is_connected()
    assert tree.problems() == []
    assert [n.span_id for n in tree.roots] == ["a"]
    assert [(d, n.span_id) for d, n in tree.walk()] == [(0, "a"), (1, "c1"), (2, "g"), (1, "c2")]
    assert [n.span_id for n in tree.path_to("g")] == ["a", "c1", "g"]
    assert tree.path_to("nope") == []


def test_duplicates_from_a_resent_batch_count_once() -> None:
    tree = trace_tree([row("a"), row("b", "a"), row("b", "a")])
    assert len(tree.spans) == 2
    assert [n.span_id for n in tree.roots[0].children] == ["b"]


def test_a_missing_parent_is_reported() -> None:
    tree = trace_tree([row("a"), row("x", "lost")])
    assert not tree.is_connected()
    assert [n.span_id for n in tree.orphans] == ["x"]
    assert tree.problems() == ["span x (svc: op-x) has missing parent lost"]


def test_several_roots_and_none_are_reported() -> None:
    assert trace_tree([row("a"), row("b")]).problems() == ["expected one root span, found 2"]
    assert trace_tree([]).problems() == ["expected one root span, found 0"]


def test_a_parent_cycle_is_reported_and_does_not_hang() -> None:
    tree = trace_tree([row("r"), row("a", "b"), row("b", "a"), row("s", "s")])
    assert sorted(n.span_id for n in tree.cyclic) == ["a", "b", "s"]
    assert [n.span_id for _, n in tree.walk()] == ["r"]
    assert len(tree.problems()) == 3
    assert [n.span_id for n in tree.path_to("a")] == ["b", "a"]


def test_render() -> None:
    tree = trace_tree(
        [
            row("a", service="router"),
            row("b", "a", start=1, service="inference", StatusCode="Error"),
        ]
    )
    assert tree.render().splitlines() == [
        "router: op-a [Internal] 2.00 ms",
        "  inference: op-b [Internal] 2.00 ms Error",
    ]
    assert trace_tree([row("x", "gone")]).render().splitlines()[-1].startswith("! ")


def test_rows_as_dicts_names_query_columns() -> None:
    values = ("a", "", "op", "svc", "Server", 5, 10, "Ok")
    (mapped,) = rows_as_dicts(TRACE_COLUMNS, [values])
    assert mapped["SpanKind"] == "Server" and mapped["StatusCode"] == "Ok"
    assert trace_tree([mapped]).roots[0].duration_ns == 10
