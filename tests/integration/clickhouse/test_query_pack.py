"""The analysts' views (migration 014) and query pack (infra/clickhouse/queries/*.sql) on the
real engine, through the store's HTTP interface (its SQL guard included), over seeded rows:
each returns the numbers worked out by hand below. Each query runs as the read-only analyst too.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client
from typer.testing import CliRunner

from llmops.cli.app import app
from llmops.clickhouse import client as store
from llmops.config import get_settings
from llmops.stats.fairness import rate_ratio
from llmops.stats.proportions import wilson_interval
from tests.conftest import StoreServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
QUERIES = REPO / "infra" / "clickhouse" / "queries"
VIEWS = "014_views.sql"


@dataclass(frozen=True)
class Seeded:
    url: str  # service user's URL of the test's database
    analyst_url: str
    anchor: datetime  # the first window's start: whole hour, all windows on its UTC day
    responses_at: datetime  # within the last hour


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _anchor(now: datetime) -> datetime:
    """A whole hour at most 5 hours back whose next 3 hours lie on its own UTC day (they may
    lie ahead of now just after midnight: every view takes a future window as recent)."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return max(day, _hour(now) - timedelta(hours=5))


# ------------------------------------------------------------------ seed

RATE_KEYS = ("refusal", "pii_output", "toxic", "unsupported", "error")


def _window(
    start: datetime,
    version: int,
    responses: int,
    errors: int,
    hits: dict[str, int],
    totals: dict[str, int],
    latency: list[float],
    *,
    prompt: str = "support",
    pool: str = "p1",
    segment: str = "",
    inserted_at: datetime | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "window_start": start,
        "window_end": start + timedelta(seconds=60),
        "prompt_name": prompt,
        "prompt_version": version,
        "variant": "",
        "pool": pool,
        "model": "m1",
        "segment": segment,
        "event_id": uuid.uuid4().hex,
        "ts": start + timedelta(seconds=60),
        "responses": responses,
        "errors": errors,
        "rate_totals": totals,
        "rate_hits": hits,
        "quantiles": {"latency_ms": latency} if latency else {},
    }
    if inserted_at is not None:
        row["inserted_at"] = inserted_at
    return row


def _all(n: int, **extra: int) -> dict[str, int]:
    """Totals: every response checked for refusal, PII, toxicity and errors, plus extra."""
    return {"refusal": n, "pii_output": n, "toxic": n, "error": n, **extra}


def quality_rows(a: datetime) -> list[dict[str, Any]]:
    m = timedelta(minutes=1)
    return [
        # support v1: hour a (W1-W3), then W4 in hour a+1, its last window
        _window(
            a,
            1,
            100,
            2,
            {"refusal": 5, "pii_output": 1, "pii_output.EMAIL": 1, "unsupported": 3, "error": 2},
            _all(100, unsupported=40, **{"pii_output.EMAIL": 100}),
            [100, 150, 200, 300],
        ),
        _window(
            a + 30 * m,
            1,
            50,
            3,
            {"refusal": 5, "pii_output": 2, "pii_output.PHONE": 2, "unsupported": 1, "error": 3},
            _all(50, unsupported=10, **{"pii_output.PHONE": 50}),
            [120, 170, 260, 400],
            pool="p2",
        ),
        _window(a + 59 * m, 1, 10, 0, {"refusal": 0}, _all(10), [90, 100, 110, 120]),
        _window(
            a + 70 * m,
            1,
            40,
            4,
            {"refusal": 4, "error": 4, "toxic": 1},
            _all(40),
            [130, 160, 180, 250],
        ),
        # support v2 goes live at a+80m: W5, W6 its first hour, W7 after it
        _window(
            a + 80 * m,
            2,
            60,
            0,
            {
                "refusal": 12,
                "pii_output": 3,
                "pii_output.EMAIL": 2,
                "pii_output.IBAN": 1,
                "unsupported": 10,
            },
            _all(60, unsupported=20, **{"pii_output.EMAIL": 60, "pii_output.IBAN": 60}),
            [200, 300, 350, 500],
        ),
        _window(a + 110 * m, 2, 40, 2, {"refusal": 8, "error": 2}, _all(40), [210, 320, 380, 520]),
        _window(
            a + 150 * m, 2, 100, 1, {"refusal": 10, "error": 1}, _all(100), [190, 250, 300, 450]
        ),
        # one version only: no change to report
        _window(a + 10 * m, 3, 20, 0, {}, _all(20), [50, 60, 70, 80], prompt="summarize"),
        # segments of support v2 (fairness)
        _window(a + 80 * m, 2, 60, 0, {"refusal": 3}, _all(60), [], segment="locale=en"),
        _window(a + 110 * m, 2, 40, 0, {"refusal": 2}, _all(40), [], segment="locale=en"),
        _window(
            a + 80 * m, 2, 60, 1, {"refusal": 12, "error": 1}, _all(60), [], segment="locale=de"
        ),
        _window(
            a + 110 * m, 2, 40, 1, {"refusal": 8, "error": 1}, _all(40), [], segment="locale=de"
        ),
        _window(a + 80 * m, 2, 10, 0, {"refusal": 1}, _all(10), [], segment="locale=fr"),
    ]


def stale_quality_rows(a: datetime, now: datetime) -> list[dict[str, Any]]:
    """Replaced (same key, older inserted_at) or out of range: no view may count them."""
    old = now - timedelta(days=3)
    return [
        _window(a, 1, 999, 999, {"refusal": 999}, _all(999), [9e4] * 4, inserted_at=old),
        _window(
            now - timedelta(days=3), 2, 500, 0, {"refusal": 400}, _all(500), [], segment="locale=en"
        ),
    ]


def response_rows(at: datetime, now: datetime) -> list[dict[str, Any]]:
    def row(
        n: int,
        version: int,
        pool: str,
        total_ms: float,
        signals: dict[str, float],
        error_kind: str = "",
        ts: datetime | None = None,
    ) -> dict[str, Any]:
        return {
            "request_id": f"r{n}",
            "event_id": uuid.uuid4().hex,
            "ts": ts or at + timedelta(seconds=n),
            "pool": pool,
            "model": "m1",
            "prompt_name": "support",
            "prompt_version": version,
            "error_kind": error_kind,
            "total_ms": total_ms,
            "ttft_ms": total_ms / 10,
            "signals": signals,
        }

    pii = "pii_output"
    return [
        row(1, 1, "p1", 100, {pii: 2, f"{pii}.EMAIL": 2, "refusal": 0}),
        row(2, 1, "p1", 200, {pii: 1, f"{pii}.EMAIL": 1}),
        row(3, 1, "p1", 300, {pii: 1, f"{pii}.PHONE": 1, "pii_input.EMAIL": 4}),
        row(4, 2, "p1", 400, {pii: 0}),
        row(5, 2, "p2", 1000, {pii: 3, f"{pii}.EMAIL": 3}),
        row(6, 2, "p2", 5000, {}, error_kind="timeout"),
        row(7, 1, "p1", 9999, {pii: 0}, ts=now - timedelta(hours=2)),  # not in the last hour
        row(8, 2, "p3", 30_000, {}, error_kind="timeout"),  # a pool with errors only
    ]


def metric_window_rows(a: datetime) -> list[dict[str, Any]]:
    def row(minute: int, requests: int, errors: int, p50: float, p95: float, p99: float) -> Any:
        start = a + timedelta(minutes=minute)
        return {
            "window_start": start,
            "window_end": start + timedelta(seconds=60),
            "prompt_name": "support",
            "prompt_version": 1,
            "pool": "p1",
            "model": "m1",
            "event_id": uuid.uuid4().hex,
            "ts": start,
            "requests": requests,
            "errors": errors,
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_p99_ms": p99,
        }

    return [row(0, 10, 1, 100, 200, 300), row(1, 30, 0, 120, 260, 500)]


def drift_rows(a: datetime, now: datetime) -> list[dict[str, Any]]:
    def row(
        start: datetime,
        version: int,
        feature: str,
        statistic: str,
        value: float,
        drifted: bool,
        streak: int,
        segment: str = "",
        p_adjusted: float | None = None,
    ) -> dict[str, Any]:
        return {
            "window_start": start,
            "window_end": start + timedelta(seconds=60),
            "prompt_name": "support",
            "prompt_version": version,
            "variant": "",
            "pool": "p1",
            "model": "m1",
            "feature": feature,
            "segment": segment,
            "statistic": statistic,
            "value": value,
            "p_value": p_adjusted,
            "p_adjusted": p_adjusted,
            "threshold": 0.1,
            "drifted": drifted,
            "streak": streak,
            "reference": "baseline:first 500",
            "reference_size": 500,
            "current_size": 60,
            "event_id": uuid.uuid4().hex,
            "ts": start,
        }

    m = timedelta(minutes=1)
    return [
        row(a + 80 * m, 2, "output_chars", "wasserstein", 0.3, True, 1),
        row(a + 110 * m, 2, "output_chars", "wasserstein", 0.2, True, 2),
        row(a + 110 * m, 2, "output_chars", "wasserstein", 0.05, False, 0, segment="locale=de"),
        row(a + 150 * m, 2, "latency_ms", "ks", 0.04, False, 0, p_adjusted=0.5),
        row(a + 30 * m, 1, "finish_reason", "jensenshannon", 0.2, True, 1, segment="locale=fr"),
        row(now - timedelta(days=2), 1, "output_chars", "wasserstein", 0.9, True, 5),
    ]


def alert_rows(now: datetime) -> list[dict[str, Any]]:
    def row(alert_id: str, state: str, version: int, rule: str, age_s: int, inserted: int) -> Any:
        return {
            "alert_id": alert_id,
            "event_id": uuid.uuid4().hex,
            "ts": now - timedelta(seconds=age_s),
            "severity": "critical" if rule == "pii_output_rate" else "warning",
            "kind": "safety",
            "rule": rule,
            "subject": f"{rule} support v{version}",
            "state": state,
            "opened_at": now - timedelta(seconds=age_s),
            "message": f"{rule} crossed",
            "prompt_name": "support",
            "prompt_version": version,
            "evidence": {"statistic": "rate"},
            "inserted_at": now - timedelta(seconds=inserted),
        }

    return [
        row("a1", "open", 2, "error_rate", 600, 60),
        row("a1", "resolved", 2, "error_rate", 600, 30),  # a1 was resolved since
        row("a2", "open", 2, "refusal_rate", 300, 30),
        row("a3", "open", 1, "pii_output_rate", 100, 30),
    ]


def _insert(client: Client, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:  # rows differ in their columns (defaults): one insert per shape
        client.insert(table, [list(row.values())], column_names=list(row))


def seed(client: Client, now: datetime) -> tuple[datetime, datetime]:
    a = _anchor(now)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    at = max(day, now.replace(microsecond=0) - timedelta(minutes=10))
    _insert(client, "quality_windows", stale_quality_rows(a, now))
    _insert(client, "quality_windows", quality_rows(a))
    _insert(client, "responses", [{**response_rows(at, now)[0], "total_ms": 5e4}])  # replaced
    _insert(client, "responses", response_rows(at, now))
    _insert(client, "metric_windows", metric_window_rows(a))
    _insert(client, "drift", drift_rows(a, now))
    _insert(client, "alerts", alert_rows(now))
    return a, at


@pytest.fixture(scope="module")
def seeded(store_server: StoreServer) -> Iterator[Seeded]:
    """One database for the module, migrated and seeded once: every test only reads."""
    name = f"qp_{uuid.uuid4().hex[:12]}"
    url = f"{store_server.url()}/{name}"
    client = store.ensure_database(url)
    try:
        assert VIEWS in store.apply_migrations(client)
        anchor, responses_at = seed(client, datetime.now(UTC))
    finally:
        client.close()
    creds = store_server.credentials
    analyst = f"{store_server.url(creds.analyst_user, creds.analyst_password)}/{name}"
    yield Seeded(url, analyst, anchor, responses_at)


def _utc(value: Any) -> Any:
    """Datetimes as aware UTC: the driver gives naive UTC for some columns, aware for others."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return value


def rows(url: str, sql: str) -> list[dict[str, Any]]:
    client = store.connect(url)
    try:
        return [{k: _utc(v) for k, v in r.items()} for r in client.query(sql).named_results()]
    finally:
        client.close()


def pack(name: str) -> str:
    return (QUERIES / f"{name}.sql").read_text(encoding="utf-8")


# ------------------------------------------------------------------ views


def test_quality_hourly_sums_hits_and_totals(seeded: Seeded) -> None:
    got = rows(
        seeded.url, "SELECT * FROM quality_hourly ORDER BY prompt_name, prompt_version, hour"
    )
    by_key = {(r["prompt_name"], r["prompt_version"], r["hour"]): r for r in got}
    a = seeded.anchor
    v1 = by_key[("support", 1, a)]  # W1+W2+W3: the replaced W1 (999 responses) not counted
    assert (v1["windows"], v1["responses"], v1["errors"]) == (3, 160, 5)
    assert v1["error_rate"] == pytest.approx(5 / 160)
    assert v1["refusal_rate"] == pytest.approx(10 / 160)
    assert v1["pii_output_rate"] == pytest.approx(3 / 160)
    assert v1["toxic_rate"] == 0.0
    assert v1["unsupported_rate"] == pytest.approx(4 / 50)
    assert v1["json_invalid_rate"] is None  # nothing asked for JSON
    assert (v1["hits"]["pii_output.PHONE"], v1["hits"]["pii_output.EMAIL"]) == (2, 1)
    later = by_key[("support", 1, a + timedelta(hours=1))]
    assert (later["responses"], later["refusal_rate"]) == (40, pytest.approx(0.1))
    v2 = by_key[("support", 2, a + timedelta(hours=1))]
    assert (v2["responses"], v2["errors"]) == (100, 2)
    assert v2["refusal_rate"] == pytest.approx(0.2) and v2["unsupported_rate"] == 0.5
    assert len(got) == 5  # support v1 x2 hours, v2 x2 hours, summarize v3


def test_quality_rates_hourly_has_wilson_intervals(seeded: Seeded) -> None:
    got = rows(
        seeded.url,
        "SELECT * FROM quality_rates_hourly WHERE prompt_name = 'support' AND prompt_version = 1"
        f" AND hour = toDateTime64('{seeded.anchor:%Y-%m-%d %H:%M:%S}', 3, 'UTC')",
    )
    by_rate = {r["rate"]: r for r in got}
    assert set(by_rate) == set(RATE_KEYS) | {"pii_output.EMAIL", "pii_output.PHONE"}
    for rate, hits, totals in (
        ("refusal", 10, 160),
        ("toxic", 0, 160),
        ("unsupported", 4, 50),
        ("pii_output.EMAIL", 1, 160),  # of every answer checked for PII in the hour
        ("pii_output.PHONE", 2, 160),
    ):
        row = by_rate[rate]
        expected = wilson_interval(hits, totals)
        assert (row["hits"], row["totals"]) == (hits, totals)
        assert row["value"] == pytest.approx(hits / totals)
        assert row["wilson_low"] == pytest.approx(expected.low, abs=1e-12)
        assert row["wilson_high"] == pytest.approx(expected.high, abs=1e-12)


def test_drift_last_day(seeded: Seeded) -> None:
    got = rows(seeded.url, "SELECT * FROM drift_last_day")
    by_key = {(r["prompt_version"], r["feature"], r["statistic"]): r for r in got}
    assert set(by_key) == {
        (2, "output_chars", "wasserstein"),
        (2, "latency_ms", "ks"),
        (1, "finish_reason", "jensenshannon"),
    }  # v1's output_chars drift of two days ago is out of range
    chars = by_key[(2, "output_chars", "wasserstein")]
    assert (chars["tests"], chars["drifted_tests"], chars["max_streak"]) == (3, 2, 2)
    assert chars["drifted_share"] == pytest.approx(2 / 3)
    assert chars["max_value"] == 0.3 and chars["drifted_segments"] == [""]
    assert chars["last_drifted_window"] == seeded.anchor + timedelta(minutes=110)
    assert chars["min_p_adjusted"] is None
    ks = by_key[(2, "latency_ms", "ks")]
    assert (ks["drifted_tests"], ks["min_p_adjusted"], ks["last_drifted_window"]) == (0, 0.5, None)
    assert by_key[(1, "finish_reason", "jensenshannon")]["drifted_segments"] == ["locale=fr"]


def test_pii_leaks_from_responses_and_windows(seeded: Seeded) -> None:
    leaks = rows(
        seeded.url,
        "SELECT prompt_version, entity, sum(leaking_responses) AS n, sum(entities_found) AS found"
        " FROM pii_leaks_daily GROUP BY prompt_version, entity ORDER BY prompt_version, entity",
    )
    assert [(r["prompt_version"], r["entity"], r["n"], r["found"]) for r in leaks] == [
        (1, "EMAIL", 2, 3),  # r1 held two addresses, r2 one; r3's input PII is not a leak
        (1, "PHONE", 1, 1),
        (2, "EMAIL", 1, 3),
    ]
    rates = rows(seeded.url, "SELECT * FROM pii_leak_rates_daily ORDER BY prompt_version, entity")
    assert [
        (r["prompt_version"], r["entity"], r["leaking_responses"], r["checked_responses"])
        for r in rates
    ] == [(1, "EMAIL", 1, 200), (1, "PHONE", 2, 200), (2, "EMAIL", 2, 200), (2, "IBAN", 1, 200)]
    assert rates[0]["leak_rate"] == pytest.approx(1 / 200)


def test_pool_latency(seeded: Seeded) -> None:
    exact = {r["pool"]: r for r in rows(seeded.url, "SELECT * FROM pool_latency_last_hour")}
    assert set(exact) == {"p1", "p2", "p3"}  # r7 (p1, 9999 ms) is two hours old
    assert math.isnan(exact["p3"]["latency_p95_ms"]) and exact["p3"]["error_rate"] == 1.0
    p1, p2 = exact["p1"], exact["p2"]
    assert (p1["responses"], p1["errors"], p2["responses"], p2["errors"]) == (4, 0, 2, 1)
    latencies = [100, 200, 300, 400]  # r1's replaced row (50,000 ms) not among them
    for q, column in ((50, "latency_p50_ms"), (95, "latency_p95_ms"), (99, "latency_p99_ms")):
        assert p1[column] == pytest.approx(float(np.percentile(latencies, q)))
    assert p1["latency_p50_ms"] == 250.0 and p1["latency_p95_ms"] == pytest.approx(385.0)
    assert p1["ttft_p95_ms"] == pytest.approx(38.5)
    assert (p2["latency_p95_ms"], p2["error_rate"]) == (1000.0, 0.5)  # the timeout apart
    hourly = rows(seeded.url, "SELECT * FROM pool_latency_hourly")
    assert len(hourly) == 1
    h = hourly[0]
    assert (h["requests"], h["errors"]) == (40, 1)
    assert h["latency_p50_ms_approx"] == pytest.approx((100 * 10 + 120 * 30) / 40)
    assert h["latency_p95_ms_approx"] == pytest.approx((200 * 10 + 260 * 30) / 40)
    assert (h["latency_p95_ms_lower"], h["latency_p95_ms_upper"]) == (200.0, 260.0)
    assert h["latency_p99_ms_upper"] == 500.0


def test_fairness_last_day(seeded: Seeded) -> None:
    got = rows(seeded.url, "SELECT * FROM fairness_last_day WHERE metric IN ('refusal', 'error')")
    by_key = {(r["metric"], r["value"]): r for r in got}
    # refusal: en 5/100 is the best value with 30+ responses (fr's 1/10 is too small a group)
    counts = {"en": (5, 100), "de": (20, 100), "fr": (1, 10)}
    for value, (hits, totals) in counts.items():
        row = by_key[("refusal", value)]
        assert (row["attribute"], row["hits"], row["totals"]) == ("locale", hits, totals)
        assert (row["best_value"], row["best_rate"]) == ("en", 0.05)
        expected = rate_ratio(hits, totals, 5, 100)
        assert row["ratio"] == pytest.approx(expected.ratio)
        assert row["ratio_low"] == pytest.approx(expected.low)
        assert row["ratio_high"] == pytest.approx(expected.high)
    assert by_key[("refusal", "de")]["ratio"] == pytest.approx(4.0)
    assert [v for (m, v), r in by_key.items() if m == "refusal" and r["outside_band"]] == ["de"]
    # error: en and fr have none; de 2/100 against en 0/100 (0.5 added to every cell)
    de = by_key[("error", "de")]
    expected = rate_ratio(2, 100, 0, 100)
    assert de["best_value"] == "en" and de["ratio"] == pytest.approx(expected.ratio)
    assert de["ratio_low"] == pytest.approx(expected.low) and not de["outside_band"]
    # the three-day-old en window (400 refusals) is out of range
    assert by_key[("refusal", "en")]["totals"] == 100


def test_version_changes(seeded: Seeded) -> None:
    got = rows(seeded.url, "SELECT * FROM version_changes")
    assert len(got) == 1  # support 1 -> 2; summarize has one version
    row = got[0]
    a, m = seeded.anchor, timedelta(minutes=1)
    assert (row["prompt_name"], row["old_version"], row["new_version"]) == ("support", 1, 2)
    assert (row["went_live"], row["old_last_end"]) == (a + 80 * m, a + 71 * m)
    # new: W5 + W6 (W7 starts after the first hour); old: W2 + W3 + W4 (W1 ends before)
    assert (row["new_responses"], row["old_responses"]) == (100, 100)
    assert row["new_error_rate"] == pytest.approx(0.02)
    assert row["old_error_rate"] == pytest.approx(0.07)
    assert row["new_refusal_rate"] == pytest.approx(0.20)
    assert row["old_refusal_rate"] == pytest.approx(0.09)
    assert row["new_pii_output_rate"] == pytest.approx(0.03)
    assert row["old_pii_output_rate"] == pytest.approx(0.02)
    assert (row["new_toxic_rate"], row["old_toxic_rate"]) == (0.0, pytest.approx(0.01))
    assert row["new_unsupported_rate"] == pytest.approx(0.5)
    assert row["old_unsupported_rate"] == pytest.approx(0.1)
    assert (row["new_latency_p95_ms_upper"], row["old_latency_p95_ms_upper"]) == (380.0, 260.0)
    assert (row["new_drifted_tests"], row["old_drifted_tests"]) == (2, 1)


# ------------------------------------------------------------------ the query pack


def test_every_pack_file_is_tested() -> None:
    names = {path.stem for path in QUERIES.glob("*.sql")}
    assert names == {
        "quality_by_version_hourly",
        "drift_by_version_last_day",
        "top_pii_leaks",
        "worst_pools_by_latency",
        "fairness",
        "version_changes",
        "open_alerts",
    }


@pytest.mark.parametrize("name", sorted(p.stem for p in QUERIES.glob("*.sql")))
def test_pack_runs_as_the_analyst(seeded: Seeded, name: str) -> None:
    """The read-only account analysts use gets the same rows as the service account."""
    assert rows(seeded.analyst_url, pack(name)) == rows(seeded.url, pack(name))


@pytest.mark.parametrize("name", sorted(p.stem for p in QUERIES.glob("*.sql")))
def test_pack_runs_through_llmops_query(
    seeded: Seeded, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the README says: llmops query --json "$(cat infra/clickhouse/queries/NAME.sql)"."""
    monkeypatch.setenv("CLICKHOUSE_URL", seeded.analyst_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["query", "--json", pack(name)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    printed = json.loads("[" + result.output.replace("}\n{", "},{") + "]")
    assert len(printed) == len(rows(seeded.url, pack(name))) > 0


def test_pack_quality_by_version_hourly(seeded: Seeded) -> None:
    got = rows(seeded.url, pack("quality_by_version_hourly"))
    assert [(r["prompt_name"], r["prompt_version"], r["responses"]) for r in got] == [
        ("summarize", 3, 20),
        ("support", 1, 160),
        ("support", 1, 40),
        ("support", 2, 100),
        ("support", 2, 100),
    ]
    assert got[1]["refusal_rate"] == round(10 / 160, 4) and got[1]["unsupported_rate"] == 0.08


def test_pack_drift(seeded: Seeded) -> None:
    got = rows(seeded.url, pack("drift_by_version_last_day"))
    assert [(r["prompt_version"], r["feature"], r["drifted_tests"], r["tests"]) for r in got] == [
        (2, "output_chars", 2, 3),
        (1, "finish_reason", 1, 1),
        (2, "latency_ms", 0, 1),
    ]
    assert got[0]["drifted_share"] == round(2 / 3, 4)


def test_pack_top_pii_leaks(seeded: Seeded) -> None:
    got = rows(seeded.url, pack("top_pii_leaks"))
    assert [
        (r["entity"], r["prompt_version"], r["leaking_responses"], r["entities_found"]) for r in got
    ] == [("EMAIL", 1, 2, 3), ("EMAIL", 2, 1, 3), ("PHONE", 1, 1, 1)]
    rates = {(r["entity"], r["prompt_version"]): r["leak_rate"] for r in got}
    # windows: v1 leaked EMAIL in 1 of 200 answers checked, PHONE in 2; v2 EMAIL in 2 of 200
    assert rates == {("EMAIL", 1): 0.005, ("EMAIL", 2): 0.01, ("PHONE", 1): 0.01}
    assert got[0]["last_seen"] == seeded.responses_at + timedelta(seconds=2)


def test_pack_worst_pools(seeded: Seeded) -> None:
    got = rows(seeded.url, pack("worst_pools_by_latency"))
    assert [(r["pool"], r["latency_p95_ms"], r["latency_p99_ms"]) for r in got] == [
        ("p2", 1000.0, 1000.0),
        ("p1", 385.0, 397.0),
        ("p3", None, None),  # errors only: no latency of an answer
    ]


def test_pack_fairness(seeded: Seeded) -> None:
    got = rows(seeded.url, pack("fairness"))
    first = got[0]
    assert (first["value"], first["metric"], first["outside_band"]) == ("de", "refusal", True)
    assert first["ratio"] == 4.0 and first["ratio_low"] == round(rate_ratio(20, 100, 5, 100).low, 3)
    assert sum(r["outside_band"] for r in got) == 1
    # 3 values x 4 rates (no segment window checked for unsupported claims)
    assert len(got) == 12


def test_pack_version_changes(seeded: Seeded) -> None:
    got = rows(seeded.url, pack("version_changes"))
    assert [(r["prompt_name"], r["old_version"], r["new_version"]) for r in got] == [
        ("support", 1, 2)
    ]
    assert (got[0]["old_refusal_rate"], got[0]["new_refusal_rate"]) == (0.09, 0.2)


def test_pack_open_alerts(seeded: Seeded) -> None:
    got = rows(seeded.url, pack("open_alerts"))
    assert [(r["severity"], r["rule"], r["prompt_version"]) for r in got] == [
        ("critical", "pii_output_rate", 1),
        ("warning", "refusal_rate", 2),
    ]  # a1 was resolved: its later row replaced the open one


def test_fairness_ratios_are_finite(seeded: Seeded) -> None:
    for row in rows(seeded.url, "SELECT ratio, ratio_low, ratio_high FROM fairness_last_day"):
        assert all(math.isfinite(v) for v in row.values())
