"""Where batches go: the `otel_traces` table, through the shared ClickHouse adapter."""

from __future__ import annotations

import logging
import threading
from typing import Any

from llmops import store
from services.traces.otlp import COLUMNS, Row

log = logging.getLogger(__name__)

TABLE = "otel_traces"


class ClickHouseSink:
    """Callable writer for SpanBatcher: connects on first use and again after a failure,
    so the receiver can start before the store (or the table) exists."""

    def __init__(self, url: str, table: str = TABLE) -> None:
        self.url = url
        self.table = table
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self, rows: list[Row]) -> None:
        with self._lock:
            if self._client is None:
                self._client = store.connect(self.url)
            try:
                store.insert_rows(self._client, self.table, rows, COLUMNS)
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
