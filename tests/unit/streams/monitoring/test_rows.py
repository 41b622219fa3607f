"""The drift and alerts rows against migration 011 and the contracts."""

from __future__ import annotations

import re

from llmops.clickhouse.client import MIGRATIONS_DIR, split_statements
from schemas import Alert, DriftReport
from streams import rows
from tests.unit.streams.monitoring.kit import at


def ddl_columns() -> dict[str, tuple[str, ...]]:
    tables = {}
    for statement in split_statements((MIGRATIONS_DIR / "011_drift_alerts.sql").read_text()):
        name = re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", statement)
        assert name is not None
        body = statement[statement.index("(") + 1 : statement.rindex("ENGINE")]
        names = re.findall(r"^\s*([a-z_][a-z0-9_]*)\s+[A-Z]", body, flags=re.MULTILINE)
        tables[name.group(1)] = tuple(n for n in names if n != "inserted_at")
    return tables


def test_columns_are_the_tables_columns_and_the_contracts_fields() -> None:
    tables = ddl_columns()
    assert tables == {rows.DRIFT_TABLE: rows.DRIFT_COLUMNS, rows.ALERTS_TABLE: rows.ALERT_COLUMNS}
    assert set(rows.DRIFT_COLUMNS) == set(DriftReport.model_fields) - {"schema_version"}
    assert set(rows.ALERT_COLUMNS) == set(Alert.model_fields) - {"schema_version"}


def test_rows_fill_every_column_and_stand_in_for_missing_windows() -> None:
    report = DriftReport(
        feature="latency_ms",
        statistic="ks",
        value=0.3,
        p_value=0.01,
        threshold=0.05,
        drifted=True,
        reference_size=500,
        current_size=100,
    )
    row = rows.drift_row(report)
    assert tuple(row) == rows.DRIFT_COLUMNS
    assert row["window_start"].year == 1970 and row["p_value"] == 0.01
    alert = Alert(
        severity="critical",
        kind="safety",
        subject="s",
        message="m",
        window_start=at(1),
        evidence={"value": "0.2"},
    )
    row = rows.alert_row(alert)
    assert tuple(row) == rows.ALERT_COLUMNS
    assert row["request_id"] == "" and row["evidence"] == {"value": "0.2"}
    assert row["opened_at"] is None and row["window_start"] == at(1)
