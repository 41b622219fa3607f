"""The store locked down, tried through its real HTTP interface: logins, the read-only
analyst, no reach from SQL to files, URLs or other services, browsers from elsewhere kept
out, size limits, and external data (multipart) as ClickHouse's own server takes it."""

from __future__ import annotations

import base64
import gzip
import socket
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.external import ExternalData

from llmops.clickhouse import client as store
from llmops.clickhouse.credentials import credentials_path
from llmops.config import Settings
from llmops.local.demo.traffic import count_rows
from tests.conftest import StoreServer
from tests.integration.local.clickhouse_server.test_http import Reply, call

pytestmark = pytest.mark.integration

PASSWD_LINE = b"root:"


def _code(reply: Reply) -> str:
    return reply.headers.get("X-ClickHouse-Exception-Code", "")


@pytest.fixture
def db(store_url: str) -> str:
    """A database of this test with table t (id UInt32, name String) holding one row."""
    name = f"s_{uuid.uuid4().hex[:12]}"
    for sql in (
        f"CREATE DATABASE {name}",
        f"CREATE TABLE {name}.t (id UInt32, name String) ENGINE = MergeTree ORDER BY id",
        f"INSERT INTO {name}.t VALUES (1, 'one')",
    ):
        reply = call(store_url, body=sql.encode())
        assert reply.status == 200, reply.body
    return name


@pytest.fixture
def analyst_url(store_server: StoreServer) -> str:
    found = store_server.credentials
    return store_server.url(found.analyst_user, found.analyst_password)


# ---------------------------------------------------------------- logins


def test_credentials_file_is_private(store_server: StoreServer) -> None:
    path = credentials_path(store_server.data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found = store_server.credentials
    assert found.service_password != found.analyst_password
    assert len(found.service_password) >= 24


def test_a_login_is_required(store_server: StoreServer) -> None:
    bare = f"http://{store_server.address}"
    select = {"query": "SELECT 1"}
    found = store_server.credentials
    for reply in (
        call(bare, select),  # no credentials at all
        call(store_server.url(password="wrong"), select),
        call(store_server.url(password=""), select),
        call(store_server.url("nobody", found.service_password), select),
        call(store_server.url(found.analyst_user, found.service_password), select),
        call(bare, {**select, "user": "default", "password": "wrong"}),
    ):
        assert (reply.status, _code(reply)) == (403, "516"), reply.body
        assert b"Authentication failed" in reply.body
    assert call(bare, path="/ping").body == b"Ok.\n"  # health checks need no login


@pytest.mark.parametrize("who", ["service", "analyst"])
def test_each_way_clickhouse_takes_credentials(store_server: StoreServer, who: str) -> None:
    found = store_server.credentials
    user, password = (
        (found.service_user, found.service_password)
        if who == "service"
        else (found.analyst_user, found.analyst_password)
    )
    bare = f"http://{store_server.address}"
    basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    for reply in (
        call(bare, {"query": "SELECT currentDatabase()"}, headers={"Authorization": basic}),
        call(
            bare,
            {"query": "SELECT currentDatabase()"},
            headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password},
        ),
        call(bare, {"query": "SELECT currentDatabase()", "user": user, "password": password}),
    ):
        assert (reply.status, reply.body) == (200, b"default\n")


def test_clickhouse_connect_logs_in_with_a_dsn(store_url: str, analyst_url: str) -> None:
    for url in (store_url, analyst_url):
        client = clickhouse_connect.get_client(dsn=url)  # the analyst's way, sessions on
        assert client.command("SELECT 42") == 42
        client.close()


def test_login_for_finds_the_embedded_stores_credentials(
    store_server: StoreServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our services and CLI name the store without a password: login_for reads it from the
    settings' data_dir when the URL is the embedded store's, and connect() logs in with it."""
    port = store_server.address.rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{port}/default"
    monkeypatch.setenv("LLMOPS_DATA_DIR", str(store_server.data_dir))
    monkeypatch.setenv("LLMOPS_STORE_PORT", port)
    for name in ("CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "LLMOPS_STORE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    client = store.connect(url, login=store.login_for(url, Settings()))
    assert client.command("SELECT currentUser()") == "default"
    client.close()
    # CLICKHOUSE_USER/PASSWORD win over the file: here the analyst, who cannot write
    found = store_server.credentials
    monkeypatch.setenv("CLICKHOUSE_USER", found.analyst_user)
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", found.analyst_password)
    client = store.connect(url, login=store.login_for(url, Settings()))
    with pytest.raises(DatabaseError) as info:
        client.command("CREATE DATABASE never_made")
    assert info.value.code == 164  # READONLY
    client.close()
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "wrong")
    with pytest.raises(DatabaseError) as info:
        store.connect(url, login=store.login_for(url, Settings()))
    assert info.value.code == 516
    # without a login, the URL's own (none here: clickhouse-connect's default user) is used
    with pytest.raises(DatabaseError) as info:
        store.connect(url)
    assert info.value.code == 516


# ---------------------------------------------------------------- the read-only analyst


def test_the_analyst_reads_and_cannot_write(store_url: str, analyst_url: str, db: str) -> None:
    where = {"database": db}
    assert call(analyst_url, {**where, "query": "SELECT * FROM t"}).body == b"1\tone\n"
    for sql in (
        "INSERT INTO t VALUES (2, 'two')",
        "INSERT INTO t SELECT 3, 'three'",
        "DROP TABLE t",
        "TRUNCATE TABLE t",
        "ALTER TABLE t DELETE WHERE 1",
        "CREATE TABLE u (a Int8) ENGINE = Memory",
        f"DROP DATABASE {db}",
        "SET max_execution_time = 100000",
        "SELECT 1 SETTINGS readonly = 0",
        "OPTIMIZE TABLE t FINAL",
    ):
        reply = call(analyst_url, where, sql.encode())
        assert reply.status != 200 and _code(reply) == "164", (sql, reply.body)
    # every query in the engine is one user's: the analyst must not kill the services'
    reply = call(analyst_url, where, b"KILL QUERY WHERE 1")
    assert (reply.status, _code(reply)) == (403, "497")
    # in a session too (clickhouse-connect opens one per client by default)
    session = {**where, "session_id": uuid.uuid4().hex}
    reply = call(analyst_url, session, b"INSERT INTO t FORMAT TSV\n4\tfour\n")
    assert _code(reply) == "164"
    reply = call(analyst_url, session, b"SYSTEM DROP DNS CACHE")
    assert reply.status == 403
    assert call(store_url, {**where, "query": "SELECT * FROM t"}).body == b"1\tone\n"


def test_the_analyst_runs_under_time_and_memory_ceilings(analyst_url: str) -> None:
    probe = "SELECT getSetting('max_execution_time'), getSetting('max_memory_usage')"
    assert call(analyst_url, {"query": probe}).body == f"30\t{1 << 30}\n".encode()
    lower = call(analyst_url, {"query": probe, "max_execution_time": "5"})
    assert lower.body == f"5\t{1 << 30}\n".encode()
    for name, value in (
        ("max_execution_time", "31"),
        ("max_execution_time", "0"),  # 0: no limit at all
        ("max_memory_usage", str(2 << 30)),
        ("readonly", "0"),
    ):
        reply = call(analyst_url, {"query": "SELECT 1", name: value})
        assert reply.status != 200 and _code(reply) in ("452", "164"), (name, reply.body)
    tight = {
        "query": "SELECT groupArray(number) FROM numbers(5000000)",
        "max_memory_usage": "10000000",
    }
    reply = call(analyst_url, tight)
    assert _code(reply) == "241"  # MEMORY_LIMIT_EXCEEDED: the engine enforces the ceiling


# ---------------------------------------------------------------- no reach from SQL


@pytest.fixture
def listener() -> Iterator[tuple[int, socket.socket]]:
    """A loopback port that records whether anything connected to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock.getsockname()[1], sock
    sock.close()


REACH = [
    # table functions
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "INSERT INTO FUNCTION file('{out}', 'TSV', 'a String') VALUES ('x')",
    "SELECT * FROM fileCluster('default', '/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:{port}/', 'LineAsString')",
    "SELECT * FROM urlCluster('default', 'http://127.0.0.1:{port}/', 'LineAsString')",
    "INSERT INTO FUNCTION url('http://127.0.0.1:{port}/', 'TSV', 'a String') VALUES ('x')",
    "SELECT * FROM s3('http://127.0.0.1:{port}/b/k', 'LineAsString')",
    "SELECT * FROM s3Cluster('default', 'http://127.0.0.1:{port}/b/k', 'LineAsString')",
    "SELECT * FROM gcs('http://127.0.0.1:{port}/b/k', 'LineAsString')",
    "SELECT * FROM hdfs('hdfs://127.0.0.1:{port}/k', 'LineAsString')",
    "SELECT * FROM azureBlobStorage('http://127.0.0.1:{port}/a', 'c', 'b')",
    "SELECT * FROM remote('127.0.0.1:{port}', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1:{port}', system.one)",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM clusterAllReplicas('default', system.one)",
    "SELECT * FROM mysql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
    "SELECT * FROM mongodb('127.0.0.1:{port}', 'db', 'c', 'u', 'p', 'a String')",
    "SELECT * FROM redis('127.0.0.1:{port}', 'k', 'k String')",
    "SELECT * FROM sqlite('/etc/passwd', 't')",
    "SELECT * FROM odbc('DSN=x', 't')",
    "SELECT * FROM jdbc('jdbc:x', 't')",
    "SELECT * FROM executable('cat /etc/passwd', 'TSV', 'a String')",
    "SELECT * FROM iceberg('http://127.0.0.1:{port}/t')",
    "SELECT * FROM icebergLocal('/etc')",
    "SELECT * FROM deltaLake('http://127.0.0.1:{port}/t')",
    "SELECT * FROM deltaLakeLocal('/etc')",
    "SELECT * FROM hudi('http://127.0.0.1:{port}/t')",
    "SELECT * FROM filesystem('/etc')",
    "SELECT * FROM python('x')",
    # spelled to slip past a naive reader
    "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
    "SELECT * FROM \"FILE\"('/etc/passwd', 'LineAsString')",
    "SELECT * FROM file /* c */ ('/etc/passwd', 'LineAsString')",
    "SELECT $$ ' $$ AS a, * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT 1 # '\n, * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT 1; SELECT * FROM file('/etc/passwd', 'LineAsString')",
    # table and database engines
    "CREATE TABLE x (a String) ENGINE = File(LineAsString, '/etc/passwd')",
    "CREATE TABLE x (a String) ENGINE = URL('http://127.0.0.1:{port}/', LineAsString)",
    "CREATE TABLE x (a String) ENGINE = S3('http://127.0.0.1:{port}/b/k', LineAsString)",
    "CREATE TABLE x (a String) ENGINE = MySQL('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
    "CREATE TABLE x (a String) ENGINE = Executable('cat', TSV)",
    "CREATE TABLE x (a String) ENGINE = Distributed('default', 'system', 'one')",
    "CREATE TABLE x (a String) ENGINE = Kafka SETTINGS kafka_broker_list = '127.0.0.1:{port}',"
    " kafka_topic_list = 't', kafka_group_name = 'g', kafka_format = 'LineAsString'",
    "CREATE TABLE x (a String) ENGINE = `FileLog`('/etc', LineAsString)",
    "CREATE TABLE x (a String) ENGINE = MergeTree ORDER BY a"
    " SETTINGS disk = disk(type = local, path = '{outdir}/')",
    "CREATE TABLE x AS file('/etc/passwd', 'LineAsString')",
    "CREATE DATABASE x ENGINE = Filesystem('/etc')",
    "CREATE DATABASE x ENGINE = SQLite('/etc/passwd')",
    "CREATE DICTIONARY d (a String) PRIMARY KEY a"
    " SOURCE(FILE(path '/etc/passwd' format 'LineAsString')) LAYOUT(FLAT()) LIFETIME(0)",
    # statements
    "SELECT 1 INTO OUTFILE '{out}'",
    "INSERT INTO x FROM INFILE '/etc/passwd' FORMAT LineAsString",
    "SYSTEM FLUSH LOGS",
    "SELECT 1; SYSTEM DROP DNS CACHE",
    "ATTACH TABLE x (a String) ENGINE = Memory",
    "DETACH TABLE system.one",
    "BACKUP TABLE system.one TO File('{out}')",
    "SELECT 1 FORMAT Protobuf SETTINGS format_schema = '/etc/passwd:M'",
]


@pytest.mark.parametrize("template", REACH, ids=range(len(REACH)))
def test_sql_cannot_reach_files_or_the_network(
    store_url: str,
    analyst_url: str,
    tmp_path: Path,
    listener: tuple[int, socket.socket],
    template: str,
) -> None:
    port, sock = listener
    out = tmp_path / "written.tsv"
    sql = template.format(out=out, outdir=tmp_path / "disk", port=port)
    for base, how in ((store_url, "POST"), (analyst_url, "POST"), (store_url, "GET")):
        body = sql.encode() if how == "POST" else None
        params = {"database": "default"} if body else {"query": sql}
        reply = call(base, params, body)
        # 497 ACCESS_DENIED; 62 where the guard, reading `#` as code, finds an open literal
        assert (reply.status, _code(reply)) in ((403, "497"), (400, "62")), (how, reply.body)
        assert PASSWD_LINE not in reply.body
    assert not out.exists() and not (tmp_path / "disk").exists()
    with pytest.raises(BlockingIOError):
        sock.accept()  # nobody came


def test_settings_that_name_files_or_dialects_are_refused(store_url: str) -> None:
    for name, value in (
        ("format_schema", "/etc/passwd:M"),
        ("dialect", "prql"),
        ("input_format_values_interpret_expressions", "1"),
    ):
        reply = call(store_url, {"query": "SELECT 1", name: value})
        assert (reply.status, _code(reply)) == (403, "497")


def test_values_rows_cannot_call_functions(store_url: str, db: str) -> None:
    """Insert data is not SQL the guard reads, but the engine evaluated expressions in
    Values rows: `INSERT ... VALUES (file('/etc/passwd'))` stored the file."""
    where = {"database": db}
    for params, body in (
        (where, b"INSERT INTO t VALUES (2, file('/etc/passwd'))"),
        ({**where, "query": "INSERT INTO t FORMAT Values"}, b"(3, concat(file('/etc/passwd')))"),
        ({**where, "session_id": uuid.uuid4().hex}, b"INSERT INTO t VALUES (4, file('/x'))"),
    ):
        reply = call(store_url, params, body)
        assert reply.status != 200 and PASSWD_LINE not in reply.body, reply.body
    assert call(store_url, {**where, "query": "SELECT * FROM t"}).body == b"1\tone\n"
    literal = call(store_url, where, b"INSERT INTO t VALUES (5, 'five')")
    assert literal.status == 200, literal.body


def test_ordinary_sql_still_runs(store_url: str, db: str) -> None:
    """The guard reads names, not text: look-alikes in strings and names pass."""
    sql = (
        "SELECT 'file(/etc/passwd)' AS s, `url` FROM (SELECT 1 AS `url`) "
        "WHERE s LIKE '%file%' AND log(1) = 0 -- SYSTEM file(\n"
    )
    reply = call(store_url, {"database": db}, sql.encode())
    assert reply.body == b"file(/etc/passwd)\t1\n", reply.body
    made = call(
        store_url,
        {"database": db},
        b"CREATE TABLE m (a Int8) ENGINE = ReplacingMergeTree ORDER BY a",
    )
    assert made.status == 200, made.body


# ---------------------------------------------------------------- browsers, sizes


def test_browsers_from_elsewhere_are_refused(store_url: str) -> None:
    select = {"query": "SELECT 1"}
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:8080"},
        {"Sec-Fetch-Site": "cross-site"},  # a GET from <img> carries no Origin
    ):
        reply = call(store_url, select, headers=headers)
        assert (reply.status, _code(reply)) == (403, "497"), headers
        assert "Access-Control-Allow-Origin" not in reply.headers
    assert call(store_url, select, headers={"Sec-Fetch-Site": "none"}).body == b"1\n"


def test_cors_preflight_is_refused(store_server: StoreServer) -> None:
    conn = socket.create_connection(tuple(store_server.address.rsplit(":", 1)))  # type: ignore[arg-type]
    request = (
        "OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n"
        "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
    )
    conn.sendall(request.encode())
    answer = b"".join(iter(lambda: conn.recv(65536), b""))
    conn.close()
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"access-control-allow" not in answer.lower()


def test_request_body_limit_counts_decoded_bytes(store_url: str, db: str) -> None:
    rows = b"7\tseven\n" * ((17 << 20) // 8)  # 17 MiB: over the session store's 16 MiB
    insert = {"database": db, "query": "INSERT INTO t FORMAT TSV"}
    plain = call(store_url, insert, rows)
    assert (plain.status, _code(plain)) == (400, "36"), plain.body
    bomb = gzip.compress(rows)  # small on the wire, 17 MiB once decoded
    assert len(bomb) < 1 << 20
    packed = call(store_url, insert, bomb, {"Content-Encoding": "gzip"})
    assert (packed.status, _code(packed)) == (400, "36"), packed.body
    fits = call(store_url, insert, rows[: 1 << 20])
    assert fits.status == 200, fits.body
    count = call(store_url, {"database": db, "query": "SELECT count() FROM t WHERE id = 7"})
    assert count.body == f"{(1 << 20) // 8}\n".encode()


def test_result_limit(store_url: str) -> None:
    big = {"query": "SELECT repeat('x', 1000) FROM numbers(17000)"}  # ~17 MB of TSV
    reply = call(store_url, big)
    assert _code(reply) == "396", reply.body[:200]
    small = call(store_url, {"query": "SELECT repeat('x', 1000) FROM numbers(1000)"})
    assert small.status == 200 and len(small.body) == 1001 * 1000


# ---------------------------------------------------------------- external data (multipart)


def test_long_parameter_lists_go_through_multipart(store_url: str, analyst_url: str) -> None:
    """clickhouse-connect sends 100+ parameters as multipart form fields; llmops demo's
    final check (count_rows) did that and got code 48."""
    database = f"x_{uuid.uuid4().hex[:12]}"
    client = store.ensure_database(f"{store_url}/{database}")
    store.apply_migrations(client)
    ids = [f"req-{i:04d}-{uuid.uuid4().hex}" for i in range(200)]
    now = datetime.now(UTC)  # older rows would fall to the retention TTL
    rows = [{"request_id": rid, "ts": now} for rid in ids[:150]]
    store.insert_rows(client, "responses", rows, ["request_id", "ts"])
    client.close()
    assert count_rows(f"{store_url}/{database}", ids) == 150
    analyst = clickhouse_connect.get_client(dsn=f"{analyst_url}/{database}")
    found = analyst.query(
        "SELECT count() FROM responses WHERE request_id IN {ids:Array(String)}",
        parameters={"ids": ids},
    )
    assert found.result_rows == [(150,)]
    analyst.close()


def test_external_tables(store_url: str, analyst_url: str, db: str) -> None:
    for url in (store_url, analyst_url):
        client = clickhouse_connect.get_client(dsn=f"{url}/{db}")
        data = ExternalData(
            data=b"1\tx\n5\ty\n", file_name="ext", structure=["id UInt32", "tag String"]
        )
        data.add_file(data=b"1\n2\n", file_name="ids", types=["UInt32"], fmt="TSV")
        result = client.query(
            "SELECT t.name, ext.tag, (SELECT count() FROM ids) FROM t JOIN ext ON t.id = ext.id",
            external_data=data,
        )
        assert result.result_rows == [("one", "x", 2)]
        client.close()


def test_external_data_cannot_smuggle_sql(store_url: str) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="ext"; filename="ext"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n1\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    for structure in (
        "a String) ENGINE = File(LineAsString, '/etc/passwd') --",
        "a String); SELECT 1 --",
        "a String DEFAULT file('/etc/passwd')",
    ):
        params = {"query": "SELECT * FROM ext", "ext_structure": structure}
        reply = call(store_url, params, body, headers)
        assert reply.status in (400, 403), reply.body
        assert PASSWD_LINE not in reply.body
