"""Read a window's responses back from the `responses` table. Pure: SQL text and row mapping.

Used for windows the worker first sees after they closed (see streams/windows.py): every
response reaches the windows only after its `responses` row was inserted, so the table
holds at least what was counted in such a window before.

The quality aggregates need what the features carried too: the detectors' signals (the
`signals` column), the declared segment attributes (from `attributes`) and the output
embedding, from an `embedding` column where the store has one (migration 012; read only
when `has_embedding_column` found it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from schemas.base import MAX_ATTRIBUTE_LEN, MAX_STATISTIC
from schemas.monitoring import MAX_EMBEDDING_DIM, MAX_SIGNALS
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
EMBEDDING_COLUMN = "embedding"
_SIGNAL_NAME = re.compile(r"[A-Za-z0-9_.:/\-]{1,128}")

# Whether the store's responses table has the output embedding column (migration 012).
EMBEDDING_COLUMN_QUERY = (
    "SELECT count() AS found FROM system.columns WHERE database = currentDatabase() "
    f"AND table = '{RESPONSES_TABLE}' AND name = '{EMBEDDING_COLUMN}'"
)


def has_embedding_column(rows: Sequence[Mapping[str, Any]]) -> bool:
    """The answer of EMBEDDING_COLUMN_QUERY."""
    return bool(rows) and int(rows[0]["found"]) > 0


def stored_responses_query(
    keys: Sequence[WindowKey],
    length_ms: int,
    segment_attributes: Sequence[str] = (),
    with_embedding: bool = False,
) -> tuple[str, dict[str, Any]]:
    """One query for the responses of all `keys`: their time span, their groups; with their
    signals, their `segment_attributes` and (`with_embedding`) their output embedding.

    No FINAL: a response stored twice is counted once by request id anyway, and FINAL
    would merge the whole table first. Rows of other windows in that span are filtered out
    by the caller (`WindowAccumulator.seed` keeps only its window's).
    """
    if not keys:
        raise ValueError("no windows to read")
    lo: datetime = from_epoch_ms(min(k.start_ms for k in keys))
    hi: datetime = from_epoch_ms(max(k.start_ms for k in keys) + length_ms)
    groups = sorted({k.group for k in keys})
    columns = [
        *FEATURE_COLUMNS,
        "signals",
        "mapFilter((k, v) -> has({segment_attributes:Array(String)}, k), attributes) AS segments",
    ]
    if with_embedding:
        columns.append(EMBEDDING_COLUMN)
    sql = (
        f"SELECT {', '.join(columns)} FROM {RESPONSES_TABLE} "
        "WHERE ts >= {lo:DateTime64(3, 'UTC')} AND ts < {hi:DateTime64(3, 'UTC')} "
        "AND (prompt_name, prompt_version, variant, pool, model) IN "
        "{groups:Array(Tuple(String, UInt32, String, String, String))}"
    )
    parameters = {
        "lo": lo,
        "hi": hi,
        "groups": groups,
        "segment_attributes": list(segment_attributes),
    }
    return sql, parameters


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
            "signals": _signals(row.get("signals") or {}),
            "segments": {
                str(name): str(value)[:MAX_ATTRIBUTE_LEN]
                for name, value in (row.get("segments") or {}).items()
            },
            "embedding": _embedding(row.get(EMBEDDING_COLUMN)),
        }
    )


def _clamp(value: float) -> float:
    return max(-MAX_STATISTIC, min(MAX_STATISTIC, value))


def _signals(stored: Mapping[str, Any]) -> dict[str, float]:
    """The stored signals as the features carried them: finite, named as a signal is,
    clamped to the contract's bound, at most MAX_SIGNALS (streams.features_with_signals)."""
    values: dict[str, float] = {}
    for name, value in stored.items():
        if len(values) >= MAX_SIGNALS:
            break
        number = float(value)
        if math.isfinite(number) and _SIGNAL_NAME.fullmatch(str(name)) is not None:
            values[str(name)] = _clamp(number)
    return values


def _embedding(stored: Sequence[float] | None) -> list[float] | None:
    """The stored embedding; None when there is none or it holds a value no sum can use."""
    if not stored:
        return None
    vector = [float(v) for v in stored[:MAX_EMBEDDING_DIM]]
    if not all(math.isfinite(v) for v in vector):
        return None
    return [_clamp(v) for v in vector]
