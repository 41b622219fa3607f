"""A failed insert: the rows' fault (split and dead-letter) or the store's (retry)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from streams.failures import DATA_ERROR_CODES, classify, error_code


def server_error(code: int, name: str, text: str) -> DatabaseError:
    """As clickhouse-connect raises it for an HTTP error carrying a ClickHouse exception."""
    return DatabaseError(
        f"Received ClickHouse exception, code: {code}, server response: Code: {code}. "
        f"DB::Exception: {text}. ({name}) (version 26.9.2.1) (for url http://127.0.0.1:1)"
    )


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (6, "CANNOT_PARSE_TEXT"),
        (41, "CANNOT_PARSE_DATETIME"),
        (43, "ILLEGAL_TYPE_OF_ARGUMENT"),
        (53, "TYPE_MISMATCH"),
        (70, "CANNOT_CONVERT_TYPE"),
        (321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"),
        (407, "DECIMAL_OVERFLOW"),
        (469, "VIOLATED_CONSTRAINT"),
    ],
)
def test_clickhouse_value_errors_are_the_rows_fault(code: int, name: str) -> None:
    failure = classify(server_error(code, name, "while converting column `n`"))
    assert (failure.kind, failure.code) == ("data", code)
    assert name in failure.reason


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (60, "UNKNOWN_TABLE"),  # migrations not applied yet: they will be
        (16, "NO_SUCH_COLUMN_IN_TABLE"),
        (516, "AUTHENTICATION_FAILED"),
        (241, "MEMORY_LIMIT_EXCEEDED"),
        (252, "TOO_MANY_PARTS"),
        (159, "TIMEOUT_EXCEEDED"),
        (202, "TOO_MANY_SIMULTANEOUS_QUERIES"),
        (1000, "POCO_EXCEPTION"),
    ],
)
def test_other_server_errors_are_the_stores(code: int, name: str) -> None:
    failure = classify(server_error(code, name, "something went wrong"))
    assert (failure.kind, failure.code) == ("store", code)


def test_a_store_that_is_down_is_retried() -> None:
    refused = OperationalError(
        "Error HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: "
        "/?query=INSERT+INTO+responses (Caused by NewConnectionError: [Errno 111] Connection "
        "refused)"
    )
    assert classify(refused).kind == "store"
    assert classify(TimeoutError("timed out")).kind == "store"
    assert classify(ConnectionResetError(104, "Connection reset by peer")).kind == "store"
    bare_5xx = DatabaseError("HTTP driver received HTTP status 503, server response: busy")
    assert classify(bare_5xx).kind == "store"


def test_values_python_or_arrow_cannot_convert_are_the_rows_fault() -> None:
    with pytest.raises(OverflowError) as overflow:
        pa.array([2**70])
    with pytest.raises(UnicodeEncodeError) as surrogate:
        pa.array(["\ud800"])
    with pytest.raises(pa.ArrowTypeError) as wrong_type:
        pa.array([{"a": 1}], type=pa.string())
    with pytest.raises(pa.ArrowInvalid) as mixed:
        pa.array([1, "x"])
    for error in (overflow.value, surrogate.value, wrong_type.value, mixed.value):
        assert classify(error).kind == "data", error
    assert classify(DataError("Invalid value for column n")).kind == "data"


def test_the_code_comes_from_the_attribute_or_the_message() -> None:
    assert error_code(DatabaseError("no code here", code=53)) == 53
    assert error_code(server_error(407, "DECIMAL_OVERFLOW", "x")) == 407
    assert error_code(RuntimeError("nothing")) is None
    assert classify(DatabaseError("opaque", code=6)).kind == "data"


def test_the_reason_is_one_bounded_line() -> None:
    failure = classify(ValueError("line one\nline two " + "x" * 5000))
    assert "\n" not in failure.reason
    assert failure.reason.startswith("ValueError: line one line two")
    assert len(failure.reason) <= 1000


def test_codes_listed_as_data_are_value_codes_only() -> None:
    # A missing table or column would dead-letter every row until migrations ran.
    assert not {16, 60, 81, 164, 241, 516} & DATA_ERROR_CODES
