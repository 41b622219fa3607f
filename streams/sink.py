"""Batched ClickHouse writes that only return once the batch is stored.

The worker acknowledges a record to faust (so its offset may be committed) only after
`TableWriter.write` returned for the batch holding it. `write` retries a failed insert with
backoff until it succeeds or the worker stops (cancellation): a batch is never dropped, and
a record whose batch was not stored is consumed again after a restart. Rows are keyed so
that ClickHouse (ReplacingMergeTree) collapses such replays.

clickhouse-connect is synchronous: every call runs in a thread so the event loop (and with
it faust's heartbeats and the other agents) keeps going while ClickHouse works.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmops import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped."""

    initial_s: float = 0.2
    factor: float = 2.0
    max_s: float = 10.0
    jitter: float = 0.2  # +- this fraction of the delay

    def delay(self, attempt: int, unit_random: float) -> float:
        """Delay before retry number `attempt` (1-based); `unit_random` in [0, 1)."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt - 1, 64))
        return base * (1.0 + self.jitter * (2.0 * unit_random - 1.0))


class TableWriter:
    """Inserts batches into one table over its own connection (one query at a time)."""

    def __init__(
        self,
        url: str,
        table: str,
        columns: Sequence[str],
        backoff: Backoff | None = None,
    ) -> None:
        self.url = url
        self.table = table
        self.columns = tuple(columns)
        self.backoff = backoff or Backoff()
        self.rows_written = 0
        self.failures = 0
        self._client: Any = None

    def _insert(self, rows: Sequence[Mapping[str, Any]]) -> int:
        if self._client is None:
            self._client = store.connect(self.url)
        try:
            return store.insert_rows(self._client, self.table, rows, self.columns)
        except Exception:
            self._close_client()  # start the next attempt on a fresh connection
            raise

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken connection may fail too; nothing to keep
                log.debug("closing the %s connection failed", self.table, exc_info=True)

    async def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store `rows`; returns only once they are stored (retries until then)."""
        if not rows:
            return
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(self._insert, rows)
            except Exception as error:
                attempt += 1
                self.failures += 1
                delay = self.backoff.delay(attempt, random.random())
                log.warning(
                    "insert of %d rows into %s failed (attempt %d, retry in %.1fs): %s",
                    len(rows),
                    self.table,
                    attempt,
                    delay,
                    error,
                )
                await asyncio.sleep(delay)
            else:
                self.rows_written += len(rows)
                return

    def close(self) -> None:
        self._close_client()
