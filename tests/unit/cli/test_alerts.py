"""`llmops alerts`, the pure parts: --since, the query, the table, the lines, what is new."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from llmops.cli.alerts import (
    COLUMNS,
    SeenAlerts,
    alert_line,
    alert_row,
    alerts_query,
    alerts_table,
    is_new,
    json_line,
    key_evidence,
    parse_since,
)
from llmops.cli.app import app
from llmops.cli.errors import Mistake
from schemas.monitoring import Alert

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def row(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "alert_id": "a1",
        "state": "open",
        "severity": "critical",
        "kind": "safety",
        "rule": "pii_output_rate",
        "subject": "support v3 pool=a",
        "opened_at": NOW - timedelta(minutes=5),
        "ts": NOW - timedelta(minutes=5),
        "message": "pii leaks",
        "evidence": {"threshold": "0.01", "value": "0.2", "statistic": "rate", "zz": "1"},
    }
    values.update(fields)
    return values


def rendered(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1.5h", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_since_durations(text: str, back: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - back


def test_since_iso_time_is_utc_unless_it_says() -> None:
    assert parse_since("2026-12-01T09:00", NOW) == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert parse_since("2026-12-01T09:00+02:00", NOW) == datetime(2026, 12, 1, 7, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "3x", "yesterday", "-2h", "99999999d", "2h30m"])
def test_bad_since_is_a_mistake(text: str) -> None:
    with pytest.raises(Mistake, match="--since"):
        parse_since(text, NOW)


def test_bad_since_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(app, ["alerts", "--since", "soon"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --since 'soon': expected a duration (30m, 2h, 7d) or an ISO time (2026-12-01T09:00)"
    ]


def test_bad_limit_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["alerts", "--limit", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["alerts", "--help"], prog_name="llmops")
    assert result.exit_code == 0
    for option in ("--all", "--since", "--follow", "--json", "--limit"):
        assert option in result.output


def test_query_reads_the_final_state_open_only_by_default() -> None:
    sql, parameters = alerts_query(include_resolved=False, since=None, limit=10)
    assert "FROM alerts FINAL WHERE state = 'open' ORDER BY" in sql
    assert parameters == {"limit": 10}
    sql, _ = alerts_query(include_resolved=True, since=None, limit=10)
    assert "WHERE" not in sql


def test_query_since_binds_a_utc_time() -> None:
    since = datetime(2026, 12, 1, 11, 0, 0, 250000, tzinfo=UTC)
    sql, parameters = alerts_query(include_resolved=True, since=since, limit=5)
    assert "coalesce(opened_at, ts) >= {since:DateTime64(3, 'UTC')}" in sql
    assert parameters["since"] == "2026-12-01 11:00:00.250"


def test_key_evidence_leads_with_what_matters_and_is_cut() -> None:
    evidence = {"zz": "1", "threshold": "0.01", "value": "0.2", "statistic": "rate"}
    assert key_evidence(evidence) == "statistic=rate value=0.2 threshold=0.01 zz=1"
    assert key_evidence({}) == ""
    assert key_evidence({"p_value": "", "value": "2", "p_adjusted": "0.01"}) == (
        "value=2 p_adjusted=0.01"
    )
    cut = key_evidence({"reference": "r" * 500}, width=40)
    assert len(cut) == 40 and cut.endswith("…")


def test_table_shows_each_alert() -> None:
    text = rendered(alerts_table([row(), row(alert_id="a2", state="resolved")], "2 alerts"))
    assert "2 alerts" in text
    assert "critical" in text and "pii_output_rate" in text and "support v3 pool=a" in text
    assert "2026-12-02 11:55:00" in text
    assert "statistic=rate value=0.2 threshold=0.01" in text
    assert "resolved" in text


def test_markup_in_data_is_shown_as_is() -> None:
    text = rendered(alerts_table([row(subject="[bold]x[/bold] [red]")], "t"))
    assert "[bold]x[/bold] [red]" in text


def test_follow_line() -> None:
    text = rendered(alert_line(row(state="resolved", ts=NOW)))
    assert text.startswith("2026-12-02 12:00:00 resolved critical safety/pii_output_rate")
    assert "support v3 pool=a" in text and "statistic=rate" in text


def test_json_line_parses_with_utc_times() -> None:
    parsed = json.loads(json_line(row(opened_at=datetime(2026, 12, 2, 11, 55))))
    assert parsed["opened_at"] == "2026-12-02T11:55:00+00:00"
    assert parsed["evidence"]["value"] == "0.2"


def test_a_record_becomes_a_row() -> None:
    alert = Alert(
        severity="warning",
        kind="drift",
        rule="drift_latency_ms",
        subject="s",
        alert_id="x",
        message="m",
        evidence={"statistic": "psi"},
    )
    record = alert_row(alert)
    assert tuple(record) == COLUMNS
    assert record["evidence"] == {"statistic": "psi"}
    assert json.loads(json_line(record))["rule"] == "drift_latency_ms"


def test_seen_alerts_show_each_state_once_and_are_bounded() -> None:
    seen = SeenAlerts([row()])
    assert not seen.first_time(row())
    assert seen.first_time(row(state="resolved"))
    small = SeenAlerts(limit=2)
    for i in range(5):
        small.first_time(row(alert_id=str(i)))
    assert small.first_time(row(alert_id="0"))  # forgotten


def test_history_older_than_the_listing_is_not_new() -> None:
    def at(ts: datetime) -> Alert:
        return Alert(severity="info", kind="k", subject="s", message="m", ts=ts)

    assert is_new(at(NOW), NOW, None)
    assert is_new(at(NOW - timedelta(seconds=30)), NOW, None)  # overlap: the seen set decides
    assert not is_new(at(NOW - timedelta(hours=1)), NOW, None)
    assert not is_new(at(NOW), NOW, NOW + timedelta(minutes=1))
