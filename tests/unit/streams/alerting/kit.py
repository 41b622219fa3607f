"""Alerts for the alerting tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.monitoring import Alert

WINDOW_START = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
WINDOW_END = datetime(2026, 12, 2, 4, 1, tzinfo=UTC)


def alert(**fields: Any) -> Alert:
    values: dict[str, Any] = {
        "severity": "critical",
        "kind": "safety",
        "rule": "refusal_rate",
        "subject": "support v3 / pool a",
        "alert_id": "a1",
        "message": "refusal rate 0.31 above 0.10",
        "prompt_name": "support",
        "prompt_version": 3,
        "pool": "a",
        "window_start": WINDOW_START,
        "window_end": WINDOW_END,
        "opened_at": WINDOW_END,
        "evidence": {"statistic": "rate", "value": "0.31", "threshold": "0.10"},
    }
    values.update(fields)
    return Alert(**values)
