"""The store's SQL guard and external-data parsing, as pure functions (the real engine's
refusals are in tests/integration/local/clickhouse_server/test_security.py)."""

from __future__ import annotations

import pytest

from llmops.local.clickhouse_server.external import parse_multipart, split_form
from llmops.local.clickhouse_server.guard import ACCESS_DENIED, SqlGuard, denied_setting
from llmops.local.clickhouse_server.protocol import ProtocolError
from llmops.local.clickhouse_server.server import _origin_refused

# A slice of what chDB reports (system.table_functions, table_engines, database_engines)
CATALOG = [
    "file",
    "url",
    "s3",
    "remote",
    "mysql",
    "executable",
    "python",
    "filesystem",
    "numbers",
    "values",
    "format",
    "merge",
    "null",
    "File",
    "URL",
    "Kafka",
    "MergeTree",
    "ReplacingMergeTree",
    "Memory",
    "Log",
    "Set",
    "Atomic",
    "Filesystem",
    "SQLite",
]
GUARD = SqlGuard.from_catalog(CATALOG)


def test_the_deny_list_is_the_catalog_minus_the_allow_list() -> None:
    assert {"file", "url", "kafka", "python", "filesystem", "sqlite", "disk"} <= GUARD.denied_calls
    assert not {"numbers", "values", "format", "mergetree", "memory", "log", "set", "atomic"} & (
        GUARD.denied_calls
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM file('/etc/passwd')",
        "select FILE('/etc/passwd')",
        "SELECT * FROM `file`('/x')",
        "SELECT * FROM \u201cfile\u201d('/x')",
        "SELECT * FROM file/**/('/x')",
        "SELECT $tag$ ' $tag$, file('/x')",
        "SELECT 1 # '\n, file('/x')",
        "SELECT 1 /* /* */ , file('/x') */",
        "CREATE TABLE t (a Int) ENGINE = Kafka SETTINGS x = 1",
        "CREATE TABLE t (a Int) ENGINE `File`",
        "CREATE DATABASE d ENGINE = Filesystem('/etc')",
        "CREATE OR REPLACE DICTIONARY d (a Int) PRIMARY KEY a SOURCE(NULL()) LAYOUT(FLAT())",
        "CREATE NAMED COLLECTION c AS url = 'x'",
        "SELECT 1; system flush logs",
        "SELECT 1 INTO OUTFILE '/tmp/x'",
        "INSERT INTO t FROM INFILE '/etc/passwd'",
        "SELECT 1 SETTINGS format_schema = 'x:M'",
        "SELECT * FROM {f:Identifier}('/etc/passwd')",
        "SELECT 'open",
    ],
)
def test_refused(sql: str) -> None:
    with pytest.raises(ProtocolError) as info:
        GUARD.check(sql)
    assert info.value.code in (ACCESS_DENIED, 62)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'file(/etc/passwd)', `url` FROM t WHERE x IN (1, 2)",
        "SELECT 1 AS a$file$, log(2), format('{}', 1) FROM numbers(3)",
        "CREATE TABLE IF NOT EXISTS t (a Int) ENGINE = ReplacingMergeTree(a) ORDER BY a",
        "SELECT count() FROM responses WHERE request_id IN {ids:Array(String)}",
        "OPTIMIZE TABLE t FINAL",
        "SELECT $$ file('/x') $$",
    ],
)
def test_allowed(sql: str) -> None:
    GUARD.check(sql)


def test_identifier_parameters_and_analyst_statements() -> None:
    GUARD.check("SELECT * FROM {t:Identifier}", {"t": "responses"})
    GUARD.check("SELECT {v:String}", {"v": "file"})  # a value, not a name
    with pytest.raises(ProtocolError):
        GUARD.check("SELECT * FROM {t:Identifier}", {"t": "`file`"})
    GUARD.check("KILL QUERY WHERE 1")
    with pytest.raises(ProtocolError):
        GUARD.check("KILL QUERY WHERE 1", analyst=True)
    assert denied_setting("dialect") and denied_setting("format_template_row")
    assert not denied_setting("max_block_size")


def test_origins() -> None:
    allowed = frozenset({"http://localhost:3000"})
    assert _origin_refused({}, allowed) is None
    assert _origin_refused({"Origin": "http://localhost:3000"}, allowed) is None
    assert _origin_refused({"Origin": "http://evil.example"}, allowed)
    assert _origin_refused({"Sec-Fetch-Site": "cross-site"}, allowed)
    assert _origin_refused({"Sec-Fetch-Site": "same-origin"}, allowed) is None


def _form(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--B\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + b"--B--\r\n"


def test_multipart_form_fields_and_external_tables() -> None:
    binary = bytes(range(256)) + b"\r\n--Bx\r\n"  # boundary-like bytes inside a part
    body = _form(
        ("query", None, b"SELECT 1"),
        ("param_ids", None, b"['a','b']"),
        ("ext", "ext", binary),
        ("pairs", "p", b"1\tx\n"),
    )
    parts = parse_multipart(body, b"B")
    assert [(p.name, p.filename) for p in parts] == [
        ("query", None),
        ("param_ids", None),
        ("ext", "ext"),
        ("pairs", "p"),
    ]
    assert parts[2].data == binary
    url = [("ext_structure", "a String"), ("pairs_types", "UInt8, Tuple(a Int8, b String)")]
    pairs, tables = split_form([*url, ("pairs_format", "TSV"), ("x", "1")], parts)
    assert pairs == [("x", "1"), ("query", "SELECT 1"), ("param_ids", "['a','b']")]
    assert [(t.name, t.columns, t.fmt) for t in tables] == [
        ("ext", "a String", "TabSeparated"),
        ("pairs", "`_1` UInt8, `_2` Tuple(a Int8, b String)", "TSV"),
    ]


@pytest.mark.parametrize(
    "structure", ["a String) ENGINE = Memory --", "a String); SELECT 1", "(a String", ""]
)
def test_external_structure_stays_a_column_list(structure: str) -> None:
    parts = parse_multipart(_form(("ext", "ext", b"1\n")), b"B")
    with pytest.raises(ProtocolError):
        split_form([("ext_structure", structure)], parts)
