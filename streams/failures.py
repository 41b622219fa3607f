"""Why an insert failed: the rows (split them, dead-letter the bad ones) or the store (retry).

Pure: a function of the exception. The rule that decides it is the cost of a wrong answer.
Taking a store that is down for bad data would dead-letter every row of the outage, so only
errors known to be about values are `data`: ClickHouse's codes for values it cannot parse,
convert or hold, and the client-side errors of turning rows into an Arrow batch (a Python int
past 64 bits, a lone surrogate in a str, a dict where a str belongs). Everything else (no
connection, a timeout, a 5xx without a code, a missing table, a refused login, memory) is
`store` and is retried without end: nothing is lost, and a fixed store lets the batch through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

FailureKind = Literal["data", "store"]

# ClickHouse error codes (src/Common/ErrorCodes.cpp) an INSERT raises for a value it cannot
# take. An insert's query text is ours and fixed, so these come from the rows, never the SQL.
DATA_ERROR_CODES: frozenset[int] = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        43,  # ILLEGAL_TYPE_OF_ARGUMENT (a value's type the column cannot be cast from)
        44,  # ILLEGAL_COLUMN
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        128,  # TOO_LARGE_ARRAY_SIZE
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        386,  # NO_COMMON_TYPE
        407,  # DECIMAL_OVERFLOW
        469,  # VIOLATED_CONSTRAINT
    }
)

# clickhouse-connect's messages carry "Code: NNN" (and `.code` on its exceptions).
_CODE = re.compile(r"\bcode:\s*(\d+)", re.IGNORECASE)
# Reasons are stored with the dead letter and logged: keep them to a readable size.
MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class StoreFailure:
    kind: FailureKind
    reason: str  # one line: the exception's type and message
    code: int | None = None  # the ClickHouse error code, when there was one


def error_code(error: BaseException) -> int | None:
    """The ClickHouse error code an exception carries, from its `.code` or its message."""
    code = getattr(error, "code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    match = _CODE.search(str(error))
    return int(match.group(1)) if match else None


def _is_client_data_error(error: BaseException) -> bool:
    """Building the Arrow batch failed on a value (pyarrow's ArrowInvalid is a ValueError,
    ArrowTypeError a TypeError; UnicodeEncodeError a ValueError)."""
    if isinstance(error, (OverflowError, ValueError, TypeError)):
        return True
    # clickhouse-connect's own client-side conversion error (its DataError), by name so
    # this module needs no driver import.
    return type(error).__name__ == "DataError" and getattr(error, "code", None) is None


def classify(error: BaseException) -> StoreFailure:
    """Whether a failed insert is the rows' fault (`data`) or the store's (`store`)."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())[:MAX_REASON]
    code = error_code(error)
    if code is not None:
        return StoreFailure("data" if code in DATA_ERROR_CODES else "store", reason, code)
    return StoreFailure("data" if _is_client_data_error(error) else "store", reason)
