"""Store benchmark: inserts and trivial queries through the ClickHouse HTTP interface.

Starts the store service (chDB) as a subprocess on a temporary data dir and drives it with
unmodified clickhouse-connect, as every process of the platform does. With --engine it also
measures, in this process on a separate temporary path, the ways of feeding INSERT bytes to
chDB that the server chose between (streaming insert vs FROM INFILE).

    .venv/bin/python bench/store.py [--rows 1000000] [--selects 500] [--engine]

Prints a table and ends with `RESULT insert_rows_per_s=... select_p50_ms=...`
(insert_arrow, the adapter's path; p50 of `SELECT 1` on a session-less client).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmops.clickhouse import client as store
from llmops.local.clickhouse_server.launcher import service_url, start_store, stop_store
from llmops.local.procs import free_port

DDL = """
CREATE TABLE bench
(
    id UInt64, request_id String, ts DateTime64(3, 'UTC'), model LowCardinality(String),
    tokens UInt32, latency_ms Float64, ok UInt8, note String
)
ENGINE = ReplacingMergeTree ORDER BY id
"""
COLUMNS = ["id", "request_id", "ts", "model", "tokens", "latency_ms", "ok", "note"]


def make_columns(n: int) -> list[list[object]]:
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return [
        list(range(n)),
        [f"req-{i:012d}" for i in range(n)],
        [t0 + dt.timedelta(milliseconds=i) for i in range(n)],
        [("gemma", "llama", "qwen")[i % 3] for i in range(n)],
        [i % 4096 for i in range(n)],
        [i * 0.25 for i in range(n)],
        [i % 2 for i in range(n)],
        ["ok" if i % 7 else "retry" for i in range(n)],
    ]


def arrow_table(columns: list[list[object]]) -> pa.Table:
    types = [
        pa.uint64(),
        pa.string(),
        pa.timestamp("ms", tz="UTC"),
        pa.string(),
        pa.uint32(),
        pa.float64(),
        pa.uint8(),
        pa.string(),
    ]
    return pa.table(
        {name: pa.array(col, t) for name, col, t in zip(COLUMNS, columns, types, strict=True)}
    )


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_http(rows: int, selects: int, out: list[tuple[str, str]]) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    port = free_port()
    # one insert of every row: above the default request body limit
    limits = {"LLMOPS_STORE_MAX_BODY_BYTES": str(4 << 30)}
    proc = start_store(tmp / "data", "127.0.0.1", port, log_path=tmp / "store.log", env=limits)
    try:
        url = f"{service_url(tmp / 'data', '127.0.0.1', port)}/bench"
        client = store.ensure_database(url)
        client.command(DDL)
        columns = make_columns(rows)
        table = arrow_table(columns)

        arrow_s = timed(lambda: client.insert_arrow("bench", table))
        out.append(("insert_arrow (HTTP, Arrow body)", f"{rows / arrow_s:,.0f} rows/s"))
        client.command("TRUNCATE TABLE bench")
        native_s = timed(
            lambda: client.insert("bench", columns, column_names=COLUMNS, column_oriented=True)
        )
        out.append(
            ("client.insert column-oriented (Native, lz4)", f"{rows / native_s:,.0f} rows/s")
        )
        client.command("TRUNCATE TABLE bench")
        dict_rows = [
            dict(zip(COLUMNS, values, strict=True)) for values in zip(*columns, strict=True)
        ]
        rows_s = timed(lambda: store.insert_rows(client, "bench", dict_rows, COLUMNS))
        out.append(("store.insert_rows from dicts (build + Arrow)", f"{rows / rows_s:,.0f} rows/s"))
        count = client.command("SELECT count() FROM bench")
        assert count == rows, count

        small = dict_rows[:500]
        small_s = statistics.median(
            timed(lambda: store.insert_rows(client, "bench", small, COLUMNS)) for _ in range(30)
        )
        out.append(("store.insert_rows, 500-row batch (p50)", f"{small_s * 1000:.2f} ms"))

        latencies = []
        for _ in range(selects):
            latencies.append(timed(lambda: client.command("SELECT 1")))
        p50 = statistics.median(latencies) * 1000
        p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
        out.append(("SELECT 1, no session (p50 / p99)", f"{p50:.2f} / {p99:.2f} ms"))
        session = store.connect(url, autogenerate_session_id=True)
        session_lat = [timed(lambda: session.command("SELECT 1")) for _ in range(selects)]
        out.append(
            (
                "SELECT 1, clickhouse-connect session (p50)",
                f"{statistics.median(session_lat) * 1000:.2f} ms",
            )
        )
        query_lat = [timed(lambda: client.query("SELECT 1")) for _ in range(selects)]
        out.append(
            (
                "client.query('SELECT 1') Native (p50)",
                f"{statistics.median(query_lat) * 1000:.2f} ms",
            )
        )
        return rows / arrow_s, p50
    finally:
        stop_store(proc)


def bench_engine(rows: int, out: list[tuple[str, str]]) -> None:
    """In-process chDB on its own path: how to feed INSERT bytes to the engine."""
    import chdb

    path = tempfile.mkdtemp(prefix="bench-chdb-")
    conn = chdb.connect(path)
    conn.query("CREATE DATABASE b")
    conn.query(DDL.replace("CREATE TABLE bench", "CREATE TABLE b.bench"))
    select = (
        "SELECT number AS id, toString(number) AS request_id, toDateTime64(number, 3, 'UTC') AS ts,"
        " 'gemma' AS model, toUInt32(number % 4096) AS tokens, number / 4 AS latency_ms,"
        f" toUInt8(number % 2) AS ok, 'ok' AS note FROM numbers({rows})"
    )
    for fmt in ("Native", "ArrowStream", "TSV"):
        body = conn.query(f"{select} FORMAT {fmt}", "CSV").bytes()

        def streaming(piece: int | None, body: bytes = body, fmt: str = fmt) -> None:
            ins = conn.send_insert("INSERT INTO b.bench", fmt)
            piece = piece or len(body)
            for i in range(0, len(body), piece):
                ins.append(body[i : i + piece])
            ins.finish()

        def infile(body: bytes = body, fmt: str = fmt) -> None:
            with tempfile.NamedTemporaryFile(dir=path, delete=False) as f:
                f.write(body)
            conn.query(f"INSERT INTO b.bench FROM INFILE '{f.name}' FORMAT {fmt}")
            os.unlink(f.name)

        for label, fn in (
            ("send_insert, 1 MiB pieces", lambda: streaming(1 << 20)),
            ("send_insert, one piece", lambda: streaming(None)),
            ("temp file + FROM INFILE", infile),
        ):
            conn.query("TRUNCATE TABLE b.bench")
            seconds = timed(fn)
            out.append((f"engine {fmt}: {label}", f"{rows / seconds:,.0f} rows/s"))
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--selects", type=int, default=500)
    parser.add_argument("--engine", action="store_true", help="also measure chDB in-process")
    args = parser.parse_args()
    results: list[tuple[str, str]] = []
    insert_rate, p50 = bench_http(args.rows, args.selects, results)
    if args.engine:
        bench_engine(args.rows, results)
    width = max(len(name) for name, _ in results)
    print(f"store benchmark: {args.rows:,} rows x {len(COLUMNS)} columns, {os.cpu_count()} cores")
    print(f"{'measure'.ljust(width)}  result")
    print(f"{'-' * width}  {'-' * 20}")
    for name, value in results:
        print(f"{name.ljust(width)}  {value}")
    print(f"RESULT insert_rows_per_s={insert_rate:.0f} select_p50_ms={p50:.3f}")


if __name__ == "__main__":
    main()
