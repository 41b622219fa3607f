"""Batched ClickHouse writes that only return once the batch is stored.

The worker acknowledges a record to faust (so its offset may be committed) only after
`TableWriter.write` returned for the batch holding it. An insert that fails because the store
is down (streams/failures.py) is retried with backoff until it succeeds or the worker stops
(cancellation): such a batch is never dropped, and a record whose batch was not stored is
consumed again after a restart. An insert refused for its values is split until the rows the
store cannot take are found (streams/isolate.py): the rest is stored and `write` returns the
refused rows, for the caller to dead-letter, so one bad record never stops the stream. Rows
are keyed so that ClickHouse (ReplacingMergeTree) collapses replays.

clickhouse-connect is synchronous: every call runs in a thread so the event loop (and with
it faust's heartbeats and the other agents) keeps going while ClickHouse works. Each writer
and reader has its own connection and makes one call at a time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from llmops.clickhouse import client as store
from streams.failures import StoreFailure, classify
from streams.isolate import DataRefused, Unstorable, insert_isolating

log = logging.getLogger(__name__)

Row = Mapping[str, Any]
T = TypeVar("T")


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


class _Connection:
    """One clickhouse-connect client, used by one caller at a time, opened on demand and
    dropped after a failure so that the next attempt starts on a fresh connection."""

    def __init__(self, url: str, login: tuple[str, str] | None) -> None:
        self.url = url
        self.login = login
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            self._client = store.connect(self.url, login=self.login)
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken connection may fail too; nothing to keep
                log.debug("closing a ClickHouse connection failed", exc_info=True)


async def _retrying(what: str, backoff: Backoff, connection: _Connection, call: Any) -> Any:
    """Run blocking `call(client)` in a thread until it succeeds (or the task is cancelled)."""
    attempt = 0
    while True:
        try:
            return await asyncio.to_thread(lambda: call(connection.client()))
        except Exception as error:
            connection.close()
            attempt += 1
            delay = backoff.delay(attempt, random.random())
            log.warning("%s failed (attempt %d, retry in %.1fs): %s", what, attempt, delay, error)
            await asyncio.sleep(delay)


class _NotConnected(Exception):
    """Opening the connection failed: the store's (or its address's) fault, not the rows'."""


class TableWriter:
    """Inserts batches into one table over its own connection (one query at a time)."""

    def __init__(
        self,
        url: str,
        table: str,
        columns: Sequence[str],
        backoff: Backoff | None = None,
        *,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.backoff = backoff or Backoff()
        self.rows_written = 0
        self.rows_refused = 0
        self.retries = 0  # inserts retried because the store was down
        self._connection = _Connection(url, login)

    async def write(self, rows: Sequence[Row]) -> list[Unstorable[Row]]:
        """Store `rows`; returns once every row is stored or refused for its values (retries
        a store that is down until then). Returns the refused rows with the store's reason."""
        refused = await insert_isolating(rows, self._insert)
        self.rows_written += len(rows) - len(refused)
        self.rows_refused += len(refused)
        return refused

    async def _insert(self, rows: Sequence[Row]) -> None:
        """One insert, retried while the store is down; DataRefused when it is the rows."""
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(self._insert_now, rows)
                return
            except Exception as error:
                failure = (
                    StoreFailure("store", f"cannot connect: {error}")  # never the rows' fault
                    if isinstance(error, _NotConnected)
                    else classify(error)
                )
                if failure.kind == "data":
                    raise DataRefused(failure.reason) from error
                self._connection.close()
                attempt += 1
                self.retries += 1
                delay = self.backoff.delay(attempt, random.random())
                log.warning(
                    "insert of %d rows into %s failed (attempt %d, retry in %.1fs): %s",
                    len(rows),
                    self.table,
                    attempt,
                    delay,
                    failure.reason,
                )
                await asyncio.sleep(delay)

    def _insert_now(self, rows: Sequence[Row]) -> None:
        try:
            client = self._connection.client()
        except Exception as error:
            raise _NotConnected(str(error)) from error
        store.insert_rows(client, self.table, rows, self.columns)

    def close(self) -> None:
        self._connection.close()


class Reader:
    """Runs queries over its own connection, retrying like the writer."""

    def __init__(
        self, url: str, backoff: Backoff | None = None, *, login: tuple[str, str] | None = None
    ) -> None:
        self.backoff = backoff or Backoff()
        self._connection = _Connection(url, login)

    async def rows(self, sql: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
        result = await self.call(
            "query", lambda client: client.query(sql, parameters=dict(parameters))
        )
        return list(result.named_results())

    async def call(self, what: str, call: Callable[[Any], T]) -> T:
        """`call(client)` in a thread, retried until it succeeds (or the task is cancelled)."""
        result: T = await _retrying(what, self.backoff, self._connection, call)
        return result

    def close(self) -> None:
        self._connection.close()
