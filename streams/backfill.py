"""Read a window's responses back from the `responses` table. Pure: SQL text and row mapping.

Used for windows the worker first sees after they closed (see streams/windows.py): every
response reaches the windows only after its `responses` row was inserted, so the table
holds at least what was counted in such a window before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from streams.features import ResponseFeatures
from streams.rows import RESPONSES_TABLE
from streams.windows import WindowKey, from_epoch_ms

# responses columns -> ResponseFeatures fields (the columns carry the features' names).
FEATURE_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",
    "prompt_name",
    "prompt_version",
    "variant",
    "pool",
    "model",
    "error_kind",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "total_ms",
    "ttft_ms",
    "tpot_ms",
    "queue_ms",
    "output_chars",
    "cost_usd",
)

# The one column named apart from its feature.
_FEATURE_OF_COLUMN = {"total_ms": "latency_ms"}


def stored_responses_query(keys: Sequence[WindowKey], length_ms: int) -> tuple[str, dict[str, Any]]:
    """One query for the responses of all `keys`: their time span, their groups.

    No FINAL: a response stored twice is counted once by request id anyway, and FINAL
    would merge the whole table first. Rows of other windows in that span are filtered out
    by the caller (`WindowAccumulator.seed` keeps only its window's).
    """
    if not keys:
        raise ValueError("no windows to read")
    lo: datetime = from_epoch_ms(min(k.start_ms for k in keys))
    hi: datetime = from_epoch_ms(max(k.start_ms for k in keys) + length_ms)
    groups = sorted({k.group for k in keys})
    sql = (
        f"SELECT {', '.join(FEATURE_COLUMNS)} FROM {RESPONSES_TABLE} "
        "WHERE ts >= {lo:DateTime64(3, 'UTC')} AND ts < {hi:DateTime64(3, 'UTC')} "
        "AND (prompt_name, prompt_version, variant, pool, model) IN "
        "{groups:Array(Tuple(String, UInt32, String, String, String))}"
    )
    return sql, {"lo": lo, "hi": hi, "groups": groups}


def features_from_row(row: Mapping[str, Any]) -> ResponseFeatures:
    """A stored response row as the features it was counted with."""
    error_kind = str(row["error_kind"])
    finish_reason = str(row["finish_reason"])
    values = {_FEATURE_OF_COLUMN.get(c, c): row[c] for c in FEATURE_COLUMNS}
    # Validated: the row's strings stand for the features' literals (finish reason, kind).
    return ResponseFeatures.model_validate(
        {
            **values,
            "error_kind": error_kind,
            "finish_reason": finish_reason,
            "is_error": bool(error_kind) or finish_reason == "error",
        }
    )
