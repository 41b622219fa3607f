"""The store's HTTP interface as curl and other ClickHouse tools see it (plain urllib)."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

import lz4.frame
import pytest

pytestmark = pytest.mark.integration


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def without_login(url: str) -> tuple[str, dict[str, str]]:
    """`url` without its user:password, and those as a Basic Authorization header."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    netloc = parts.netloc.rsplit("@", 1)[1]
    header = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), header


def call(
    base: str,
    params: dict[str, str] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/",
) -> Reply:
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    url, auth = without_login(url)
    request = urllib.request.Request(url, data=body, headers={**auth, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return Reply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


@pytest.fixture
def db(store_url: str) -> str:
    name = f"h_{uuid.uuid4().hex[:12]}"
    assert call(store_url, body=f"CREATE DATABASE {name}".encode()).status == 200
    created = call(
        store_url,
        {"database": name},
        b"CREATE TABLE t (id UInt32, name String) ENGINE = MergeTree ORDER BY id",
    )
    assert created.status == 200, created.body
    return name


def rows(store_url: str, db: str) -> bytes:
    return call(store_url, {"database": db, "query": "SELECT * FROM t ORDER BY id"}).body


def test_health_endpoints(store_url: str) -> None:
    assert call(store_url, path="/ping").body == b"Ok.\n"
    assert call(store_url).body == b"Ok.\n"
    missing = call(store_url, path="/nowhere")
    assert missing.status == 404


def test_get_query_and_headers(store_url: str) -> None:
    reply = call(store_url, {"query": "SELECT 1", "query_id": "my-query-1"})
    assert (reply.status, reply.body) == (200, b"1\n")
    assert reply.headers["X-ClickHouse-Query-Id"] == "my-query-1"
    assert reply.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert reply.headers["X-ClickHouse-Timezone"]
    summary = json.loads(reply.headers["X-ClickHouse-Summary"])
    assert summary["read_rows"] == "1"
    assert uuid.UUID(call(store_url, {"query": "SELECT 2"}).headers["X-ClickHouse-Query-Id"])


def test_post_body_query_with_formats(store_url: str) -> None:
    query = b"SELECT number AS n FROM system.numbers LIMIT 3 FORMAT JSONEachRow"
    reply = call(store_url, body=query)
    assert [json.loads(line)["n"] for line in reply.body.splitlines()] == [0, 1, 2]
    assert reply.headers["X-ClickHouse-Format"] == "JSONEachRow"
    as_default = call(store_url, {"default_format": "CSVWithNames"}, b"SELECT 1 AS a, 'x' AS b")
    assert as_default.body == b'"a","b"\n1,"x"\n'
    assert as_default.headers["X-ClickHouse-Format"] == "CSVWithNames"


def test_query_parameters_in_the_url(store_url: str) -> None:
    reply = call(
        store_url,
        {"query": "SELECT {a:UInt32} * 2, {s:String}", "param_a": "21", "param_s": "x\\ty"},
    )
    assert reply.body == b"42\tx\\ty\n"


def test_settings_in_the_url(store_url: str) -> None:
    probe = "SELECT getSetting('max_block_size')"
    reply = call(store_url, {"query": probe, "max_block_size": "99"})
    assert reply.body == b"99\n"
    unknown = call(store_url, {"query": "SELECT 1", "no_such_setting_x": "1"})
    assert unknown.status == 404
    assert unknown.headers["X-ClickHouse-Exception-Code"] == "115"


def test_insert_with_query_in_url_and_data_in_body(store_url: str, db: str) -> None:
    params = {"database": db, "query": "INSERT INTO t FORMAT TSV"}
    reply = call(store_url, params, b"1\tone\n2\ttwo\n")
    assert reply.status == 200, reply.body
    assert json.loads(reply.headers["X-ClickHouse-Summary"])["written_rows"] == "2"
    assert rows(store_url, db) == b"1\tone\n2\ttwo\n"


def test_insert_with_query_and_data_in_body(store_url: str, db: str) -> None:
    body = b'INSERT INTO t FORMAT JSONEachRow\n{"id": 3, "name": "three"}\n'
    assert call(store_url, {"database": db}, body).status == 200
    assert call(store_url, {"database": db}, b"INSERT INTO t VALUES (4, 'four')").status == 200
    assert rows(store_url, db) == b"3\tthree\n4\tfour\n"


def test_large_compressed_insert_streams_through(store_url: str, db: str) -> None:
    n = 300_000  # several MiB: crosses the server's 1 MiB insert pieces
    data = b"".join(b"%d\tname-%d\n" % (i, i) for i in range(n))
    half = len(data) // 2
    lz4_frames = lz4.frame.compress(data[:half]) + lz4.frame.compress(data[half:])
    for encoding, wire in (("gzip", gzip.compress(data)), ("lz4", lz4_frames)):
        reply = call(
            store_url,
            {"database": db, "query": "INSERT INTO t FORMAT TabSeparated"},
            wire,
            {"Content-Encoding": encoding},
        )
        assert reply.status == 200, reply.body
    count = call(store_url, {"database": db, "query": "SELECT count(), sum(id) FROM t"})
    assert count.body == f"{2 * n}\t{2 * sum(range(n))}\n".encode()


def test_response_compression_only_when_enabled(store_url: str) -> None:
    query = {"query": "SELECT number FROM numbers(1000)"}
    expected = b"".join(b"%d\n" % i for i in range(1000))
    plain = call(store_url, query, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in plain.headers and plain.body == expected
    enabled = {**query, "enable_http_compression": "1"}
    packed = call(store_url, enabled, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.body) == expected


def test_errors_in_clickhouse_form(store_url: str, db: str) -> None:
    syntax = call(store_url, {"query": "SELEC 1"})
    assert syntax.status == 400
    assert syntax.headers["X-ClickHouse-Exception-Code"] == "62"
    assert syntax.body.startswith(b"Code: 62. DB::Exception:")
    table = call(store_url, {"query": "SELECT * FROM no_such_table"})
    assert (table.status, table.headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    empty = call(store_url, body=b"  ")
    assert empty.headers["X-ClickHouse-Exception-Code"] == "62"
    bad_rows = call(store_url, {"database": db, "query": "INSERT INTO t FORMAT TSV"}, b"x\ty\n")
    assert bad_rows.status == 400
    assert bad_rows.headers["X-ClickHouse-Exception-Code"] == "27"
    codec = call(store_url, body=b"SELECT 1", headers={"Content-Encoding": "snappy"})
    assert codec.headers["X-ClickHouse-Exception-Code"] == "36"
    corrupt = call(store_url, body=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert corrupt.headers["X-ClickHouse-Exception-Code"] == "271"


def test_get_is_read_only(store_url: str, db: str) -> None:
    reply = call(store_url, {"database": db, "query": "DROP TABLE t"})
    assert reply.headers["X-ClickHouse-Exception-Code"] == "164"  # READONLY
    assert rows(store_url, db) == b""  # still there, and empty


def test_prometheus_metrics(store_url: str) -> None:
    call(store_url, {"query": "SELECT 1"})
    call(store_url, {"query": "SELEC"})
    text = call(store_url, path="/metrics").body.decode()
    assert 'llmops_store_queries_total{kind="query",outcome="ok"}' in text
    assert 'llmops_store_query_errors_total{code="62"}' in text
    assert "llmops_store_query_seconds_bucket" in text
