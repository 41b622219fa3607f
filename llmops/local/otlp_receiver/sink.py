"""Where batches go: the `otel_traces` table, as one columnar Arrow insert per batch.

`llmops.clickhouse.client` gives the client (the same URL rules everywhere). The generic
`store.insert_rows` infers Arrow types from Python values; spans need explicit ones
(nanosecond timestamps, nested arrays of maps), so the table is built here with a schema.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from llmops.clickhouse import client as store
from llmops.local.otlp_receiver.otlp import COLUMNS, Row

log = logging.getLogger(__name__)

TABLE = "otel_traces"

_STR = pa.string()
_MAP = pa.map_(_STR, _STR)
_TIME = pa.timestamp("ns", tz="UTC")
ARROW_SCHEMA = pa.schema(
    list(
        zip(
            COLUMNS,
            [
                _TIME,
                _STR,
                _STR,
                _STR,
                _STR,
                _STR,
                _STR,
                _STR,
                _MAP,
                _STR,
                _STR,
                _MAP,
                pa.uint64(),
                _STR,
                _STR,
                pa.list_(_TIME),
                pa.list_(_STR),
                pa.list_(_MAP),
                pa.list_(_STR),
                pa.list_(_STR),
                pa.list_(_STR),
                pa.list_(_MAP),
            ],
            strict=True,
        )
    )
)


def rows_to_arrow(rows: Sequence[Row]) -> pa.Table:
    """Span rows (COLUMNS order) as an Arrow table of the otel_traces column types."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
    arrays = [
        pa.array(values, type=field.type)
        for values, field in zip(columns, ARROW_SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


class ClickHouseSink:
    """Callable writer for SpanBatcher: connects on first use and again after a failure,
    so the receiver can start before the store (or the table) exists."""

    def __init__(
        self, url: str, table: str = TABLE, *, login: tuple[str, str] | None = None
    ) -> None:
        self.url = url
        self.login = login
        self.table = table
        self._client: Client | None = None
        self._lock = threading.Lock()

    def __call__(self, rows: list[Row]) -> None:
        if not rows:
            return
        data = rows_to_arrow(rows)
        with self._lock:
            if self._client is None:
                self._client = store.connect(self.url, login=self.login)
            try:
                self._client.insert_arrow(self.table, data)
            except Exception:
                self._close_locked()
                raise

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as error:  # closing a broken connection may fail too
                log.debug("closing the ClickHouse client failed: %s", error)
