"""ClickHouse HTTP conventions of the store: parameters, credentials, errors, summary."""

from __future__ import annotations

import base64
import json

import pytest

from llmops.local.clickhouse_server.access import Account, Accounts, AnalystLimits, Role
from llmops.local.clickhouse_server.protocol import (
    AUTHENTICATION_FAILED,
    UNKNOWN_EXCEPTION,
    Credentials,
    ProtocolError,
    QueryParams,
    content_type,
    credentials,
    error_body,
    error_code,
    error_message,
    http_status,
    parse_params,
    quote_setting,
    summary_header,
)


def test_params_are_sorted_into_transport_query_parameters_and_settings() -> None:
    parsed = parse_params(
        [
            ("query", "SELECT {x:UInt8}"),
            ("database", "llmops"),
            ("default_format", "JSON"),
            ("session_id", "s1"),
            ("session_timeout", "120"),
            ("query_id", "q1"),
            ("param_x", "7"),
            ("param_s", "a\\tb"),
            ("max_threads", "1"),
            ("date_time_input_format", "best_effort"),
            ("wait_end_of_query", "1"),
            ("send_progress_in_http_headers", "1"),
            ("http_headers_progress_interval_ms", "120000"),
            ("cancel_http_readonly_queries_on_client_close", "1"),
            ("enable_http_compression", "1"),
            ("client_protocol_version", "54405"),
        ]
    )
    assert parsed.query == "SELECT {x:UInt8}"
    assert parsed.database == "llmops"
    assert parsed.default_format == "JSON"
    assert (parsed.session_id, parsed.session_timeout_s, parsed.query_id) == ("s1", 120.0, "q1")
    # escaped text form is kept: the engine parses it as ClickHouse does
    assert parsed.params == {"x": "7", "s": "a\\tb"}
    assert parsed.settings == {"max_threads": "1", "date_time_input_format": "best_effort"}
    assert parsed.compress_response is True


def test_defaults_and_last_value_wins() -> None:
    parsed = parse_params([("max_threads", "1"), ("max_threads", "2")])
    assert parsed == QueryParams(settings={"max_threads": "2"})
    assert parsed.default_format == "TabSeparated"
    assert parsed.compress_response is False


@pytest.mark.parametrize("name", ["max threads", "x;DROP", "1abc", "a-b"])
def test_setting_names_that_are_not_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_params([(name, "1")])
    assert info.value.code == 115


@pytest.mark.parametrize("value", ["0", "-1", "abc", "99999"])
def test_session_timeout_bounds(value: str) -> None:
    with pytest.raises(ProtocolError):
        parse_params([("session_timeout", value)])


def test_credentials_from_headers_then_basic_then_url() -> None:
    url = parse_params([("user", "u"), ("password", "p")])
    assert credentials({}, url) == Credentials("u", "p")
    basic = "Basic " + base64.b64encode(b"alice:s3:cret").decode()
    assert credentials({"Authorization": basic}, url) == Credentials("alice", "s3:cret")
    headers = {"X-ClickHouse-User": "bob", "X-ClickHouse-Key": "k", "Authorization": basic}
    assert credentials(headers, url) == Credentials("bob", "k")
    assert credentials({}, QueryParams()) == Credentials("default", "")


def test_malformed_basic_auth_is_an_authentication_failure() -> None:
    with pytest.raises(ProtocolError) as info:
        credentials({"Authorization": "Basic ###"}, QueryParams())
    assert info.value.code == AUTHENTICATION_FAILED


def test_accounts_check_user_and_password() -> None:
    service = Account("default", "pw", Role.SERVICE)
    analyst = Account("analyst", "ro", Role.ANALYST)
    accounts = Accounts((service, analyst))
    assert accounts.check(Credentials("default", "pw")) == service
    assert accounts.check(Credentials("analyst", "ro")) == analyst
    for wrong in (
        Credentials("default", "nope"),
        Credentials("other", "pw"),
        Credentials("analyst", "pw"),  # another account's password
        Credentials("default", ""),
    ):
        with pytest.raises(ProtocolError) as info:
            accounts.check(wrong)
        assert info.value.code == AUTHENTICATION_FAILED


def test_analyst_limits_cap_settings() -> None:
    limits = AnalystLimits(max_execution_time=10, max_memory_usage=1000)
    assert limits.settings({}) == {"max_execution_time": "10", "max_memory_usage": "1000"}
    lower = limits.settings({"max_execution_time": "5", "max_block_size": "9"})
    assert lower == {"max_execution_time": "5", "max_memory_usage": "1000", "max_block_size": "9"}
    above = ({"max_execution_time": "11"}, {"max_memory_usage": "0"}, {"max_memory_usage": "x"})
    for asked in above:  # 0 is "unlimited" to ClickHouse
        with pytest.raises(ProtocolError) as info:
            limits.settings(asked)
        assert info.value.code == 452
    with pytest.raises(ProtocolError):
        limits.settings({"readonly": "0"})


def test_error_code_and_message_from_engine_text() -> None:
    text = "Streaming insert failed: Code: 27. DB::Exception: Cannot parse input. (X)"
    assert error_code(text) == 27
    assert error_message(text) == "Code: 27. DB::Exception: Cannot parse input. (X)"
    assert error_code("no code here") == UNKNOWN_EXCEPTION


def test_error_body_has_clickhouse_shape() -> None:
    body = error_body(60, "Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE)", "26.9")
    assert body == b"Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE) (version 26.9)\n"
    assert error_body(516, "denied", "1").startswith(b"Code: 516. DB::Exception: denied")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (62, 400),
        (27, 400),
        (60, 404),
        (81, 404),
        (115, 404),
        (516, 403),
        (194, 401),
        (48, 501),
        (159, 408),
        (1002, 500),
        (241, 500),
    ],
)
def test_http_status_follows_clickhouse(code: int, status: int) -> None:
    assert http_status(code) == status


def test_summary_header_values_are_strings() -> None:
    summary = json.loads(summary_header(read_rows=3, written_rows=2, elapsed_s=0.5))
    assert summary["read_rows"] == "3"
    assert summary["written_rows"] == "2"
    assert summary["elapsed_ns"] == "500000000"
    assert all(isinstance(v, str) for v in summary.values())


def test_content_types_and_setting_quotes() -> None:
    assert content_type("JSON").startswith("application/json")
    assert content_type("TabSeparatedWithNames").startswith("text/tab-separated-values")
    assert content_type("Native") == "application/octet-stream"
    assert quote_setting("it's \\") == "'it\\'s \\\\'"
