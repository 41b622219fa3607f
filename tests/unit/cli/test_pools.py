"""`llmops pools`: which pools are shown, their traffic shares, and the table's rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from llmops.cli.pools import pools_table, shown, traffic_shares
from services.router.choice import PoolView

NOW = datetime(2026, 1, 1, 12, 30, 5, tzinfo=UTC)


def view(name: str, **fields: Any) -> PoolView:
    values: dict[str, Any] = {
        "state": "up",
        "why": "",
        "configured": True,
        "cost_per_1k_tokens": 1.0,
        "cost_per_gpu_hour": 0.0,
        "priority": 0,
        "models": ("m",),
        "adapters": (),
    }
    values.update(fields)
    return PoolView(name=name, **values)


def rendered(views: list[PoolView]) -> list[str]:
    console = Console(width=250, record=True, color_system=None)
    console.print(pools_table(views, NOW))
    return console.export_text().splitlines()


def test_configured_pools_always_shown_others_while_they_beat() -> None:
    views = [
        view("configured-silent", age_s=None),
        view("configured-old", age_s=9_999.0),
        view("stranger-recent", configured=False, age_s=10.0),
        view("stranger-old", configured=False, age_s=301.0),
        view("stranger-never", configured=False, age_s=None),
    ]
    names = [v.name for v in shown(views, since_s=300.0)]
    assert names == ["configured-silent", "configured-old", "stranger-recent"]


def test_traffic_shares_are_of_the_pools_shown() -> None:
    shares = traffic_shares([view("a", requests_per_s=3.0), view("b", requests_per_s=1.0)])
    assert shares == {"a": 0.75, "b": 0.25}
    assert traffic_shares([view("idle")]) == {"idle": 0.0}  # no traffic: no division by zero
    assert traffic_shares([]) == {}


def test_the_table_lists_the_cheapest_first_with_its_numbers() -> None:
    lines = rendered(
        [
            view("pricey", cost_per_1k_tokens=2.0, requests_per_s=1.0, age_s=0.5),
            view(
                "cheap",
                cost_per_1k_tokens=0.25,
                cost_per_gpu_hour=1.5,
                provider="aws",
                region="eu-west-1",
                gpu="l4",
                capacity=6,
                in_flight=2,
                queue_depth=1,
                tokens_per_s=12.34,
                requests_per_s=3.0,
                error_rate=0.125,
                latency_p50_ms=40.4,
                latency_p99_ms=99.6,
                age_s=1.25,
            ),
            view("ghost", state="dead", why="no heartbeat for 9s", age_s=None),
        ]
    )
    assert lines[0].strip() == "pools at 12:30:05 UTC"
    header = [cell.strip() for cell in lines[2].strip("┃").split("┃")]
    rows = [line for line in lines if line.startswith("│")]
    cheap, ghost, pricey = [[cell.strip() for cell in row.strip("│").split("│")] for row in rows]
    assert header[:4] == ["pool", "state", "where", "gpu"] and header[-1] == "why"
    assert cheap == [
        "cheap",
        "up",
        "aws/eu-west-1",
        "l4",
        "0.25",
        "1.5",
        "6",
        "2",
        "1",
        "12.3",
        "3.00",
        "12.5",
        "40/100",
        "75%",
        "1.2s ago",
        "",
    ]
    assert (ghost[0], ghost[1], ghost[-2], ghost[-1]) == (
        "ghost",
        "dead",
        "never",
        "no heartbeat for 9s",
    )
    assert (pricey[0], pricey[13], pricey[14]) == ("pricey", "25%", "0.5s ago")
