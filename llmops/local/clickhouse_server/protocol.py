"""ClickHouse HTTP request/response conventions, as pure functions: which URL parameters are
transport, which are query parameters and which are settings; credentials; error codes and
their HTTP statuses; the summary header."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEFAULT_FORMAT = "TabSeparated"
DEFAULT_SESSION_TIMEOUT_S = 60.0
MAX_SESSION_TIMEOUT_S = 3600.0
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Parameters the HTTP layer consumes itself: never passed to the engine.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "user",
        "password",
        "quota_key",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "role",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_native_compression_disable_checksumming_on_decompress",
        "add_http_cors_header",
        "http_response_buffer_size",
        "http_wait_end_of_query",
        "output_format_parallel_formatting",
    }
)
# output_format_parallel_formatting: accepted, but left to the engine's default on purpose.

# ClickHouse error codes this server raises itself.
BAD_ARGUMENTS = 36
NOT_IMPLEMENTED = 48
UNKNOWN_SETTING = 115
SESSION_IS_LOCKED = 373
AUTHENTICATION_FAILED = 516
UNKNOWN_EXCEPTION = 1002

# ClickHouse's own mapping of exception codes to HTTP statuses (HTTPHandler).
_BAD_REQUEST = {6, 25, 26, 27, 36, 38, 41, 53, 62, 72, 117, 321, 457}
_NOT_FOUND = {46, 47, 50, 56, 60, 63, 73, 81, 115}
_FORBIDDEN = {192, 193, 497, 516}
_STATUS = {194: 401, 48: 501, 159: 408}

_CODE = re.compile(r"Code: (\d+)\.")


class ProtocolError(Exception):
    """A request the HTTP layer refuses before the engine sees it; carries a ClickHouse code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class QueryParams:
    """A request's URL parameters, sorted by role."""

    query: str = ""
    database: str | None = None
    default_format: str = DEFAULT_FORMAT
    session_id: str | None = None
    session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S
    query_id: str | None = None
    user: str | None = None
    password: str | None = None
    compress_response: bool = False
    # {name:Type} placeholders: values stay in ClickHouse's escaped text form, parsed by the engine
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_params(pairs: Iterable[tuple[str, str]]) -> QueryParams:
    """Sort URL parameters (later ones win) into transport fields, `param_*` and settings."""
    raw: dict[str, str] = {}
    params: dict[str, str] = {}
    settings: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("param_") and len(key) > len("param_"):
            params[key[len("param_") :]] = value
        elif key in TRANSPORT_PARAMS:
            raw[key] = value
        else:
            if not SETTING_NAME.match(key):
                raise ProtocolError(UNKNOWN_SETTING, f"Unknown setting {key!r}")
            settings[key] = value
    timeout = DEFAULT_SESSION_TIMEOUT_S
    if raw.get("session_timeout"):
        try:
            timeout = float(raw["session_timeout"])
        except ValueError:
            raise ProtocolError(BAD_ARGUMENTS, "session_timeout must be a number") from None
        if not 0 < timeout <= MAX_SESSION_TIMEOUT_S:
            raise ProtocolError(
                BAD_ARGUMENTS, f"session_timeout must be in (0, {MAX_SESSION_TIMEOUT_S:.0f}]"
            )
    return QueryParams(
        query=raw.get("query", ""),
        database=raw.get("database") or None,
        default_format=raw.get("default_format") or DEFAULT_FORMAT,
        session_id=raw.get("session_id") or None,
        session_timeout_s=timeout,
        query_id=raw.get("query_id") or None,
        user=raw.get("user"),
        password=raw.get("password"),
        compress_response=_truthy(raw.get("enable_http_compression", "0")),
        params=params,
        settings=settings,
    )


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


def credentials(headers: Mapping[str, str], query: QueryParams) -> Credentials:
    """Who is asking: X-ClickHouse-User/Key headers, else Basic auth, else URL parameters."""
    user = headers.get("X-ClickHouse-User")
    key = headers.get("X-ClickHouse-Key")
    if user is not None or key is not None:
        return Credentials(user or "default", key or "")
    auth = headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ProtocolError(AUTHENTICATION_FAILED, "malformed Basic authorization") from None
        name, _, secret = decoded.partition(":")
        return Credentials(name or "default", secret)
    return Credentials(query.user or "default", query.password or "")


def error_code(message: str) -> int:
    """The ClickHouse code in an engine error message ("Code: 60. DB::Exception: ...")."""
    match = _CODE.search(message)
    return int(match.group(1)) if match else UNKNOWN_EXCEPTION


def error_message(message: str) -> str:
    """The engine's message from its "Code: N." on, as ClickHouse puts it in a response body."""
    start = message.find("Code: ")
    return (message[start:] if start >= 0 else message).strip()


def error_body(code: int, message: str, version: str) -> bytes:
    text = error_message(message)
    if not text.startswith("Code: "):
        text = f"Code: {code}. DB::Exception: {text}"
    return f"{text} (version {version})\n".encode()


def http_status(code: int) -> int:
    if code in _BAD_REQUEST:
        return 400
    if code in _NOT_FOUND:
        return 404
    if code in _FORBIDDEN:
        return 403
    return _STATUS.get(code, 500)


def summary_header(
    *,
    read_rows: int = 0,
    read_bytes: int = 0,
    written_rows: int = 0,
    written_bytes: int = 0,
    result_bytes: int = 0,
    elapsed_s: float = 0.0,
) -> str:
    """X-ClickHouse-Summary: ClickHouse sends every number as a string."""
    summary = {
        "read_rows": read_rows,
        "read_bytes": read_bytes,
        "written_rows": written_rows,
        "written_bytes": written_bytes,
        "total_rows_to_read": read_rows,
        "result_rows": 0,
        "result_bytes": result_bytes,
        "elapsed_ns": int(elapsed_s * 1e9),
    }
    return json.dumps({k: str(v) for k, v in summary.items()}, separators=(",", ":"))


_CONTENT_TYPES = {
    "tabseparated": "text/tab-separated-values; charset=UTF-8",
    "tsv": "text/tab-separated-values; charset=UTF-8",
    "csv": "text/csv; charset=UTF-8; header=absent",
    "csvwithnames": "text/csv; charset=UTF-8; header=present",
    "json": "application/json; charset=UTF-8",
    "jsoncompact": "application/json; charset=UTF-8",
    "jsoneachrow": "application/x-ndjson; charset=UTF-8",
    "prettycompact": "text/plain; charset=UTF-8",
    "pretty": "text/plain; charset=UTF-8",
    "xml": "application/xml; charset=UTF-8",
}


def content_type(fmt: str) -> str:
    lower = fmt.lower()
    if lower in _CONTENT_TYPES:
        return _CONTENT_TYPES[lower]
    if lower.startswith("tabseparated") or lower.startswith("tsv"):
        return "text/tab-separated-values; charset=UTF-8"
    return "application/octet-stream"


def quote_setting(value: str) -> str:
    """A setting value as a SQL string literal; ClickHouse converts it to the setting's type."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
