"""Runs requests on the engine from the event loop: blocking chDB calls go to a thread pool,
HTTP sessions keep their own handle (SET, USE and temporary tables persist), and per-request
URL settings never outlive their request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from llmops.local.clickhouse_server.engine import Engine, Handle, Outcome
from llmops.local.clickhouse_server.external import ExternalTable
from llmops.local.clickhouse_server.protocol import SESSION_IS_LOCKED, ProtocolError, QueryParams
from llmops.local.clickhouse_server.sqltext import InsertHead, first_keyword

T = TypeVar("T")

# Streaming inserts hand the engine about this much at a time: fewer thread hops, and the
# engine parses 1 MiB pieces faster than one huge buffer (measured: bench/store.py).
INSERT_CHUNK_BYTES = 1 << 20
# Formats the engine can only parse whole (a footer or an index at the end): it buffers them
# until the insert finishes anyway, so they go in as one piece (measured faster than many).
WHOLE_BODY_FORMATS = frozenset({"arrow", "parquet", "orc"})
SESSION_LOCK_WAIT_S = 30.0
MAX_SESSIONS = 512


@dataclass
class Session:
    """An HTTP session's own handle. URL settings hold for one request, as in ClickHouse; a
    client sends the same ones every time, so they stay applied until a request differs,
    instead of being set and undone around each request."""

    handle: Handle
    timeout_s: float
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    database: str | None = None  # what we last USEd; None once the client may have changed it
    overrides: dict[str, str] = field(default_factory=dict)
    originals: dict[str, str | None] = field(default_factory=dict)

    def expired(self, now: float) -> bool:
        return not self.lock.locked() and now - self.last_used > self.timeout_s

    def prepare(self, query: QueryParams) -> None:
        """Blocking: bring the handle to this request's database and URL settings."""
        wanted = query.settings
        gone = {n: self.originals.pop(n) for n in list(self.overrides) if n not in wanted}
        self.handle.restore_settings(gone)
        new = [n for n in wanted if n not in self.overrides]
        self.originals.update(self.handle.snapshot_settings(new))
        try:
            self.handle.apply_settings(
                {n: v for n, v in wanted.items() if self.overrides.get(n) != v}
            )
        except BaseException:
            # a rejected value: put every setting we touched back, so none leaks on
            self.handle.restore_settings(self.originals)
            self.originals.clear()
            self.overrides.clear()
            raise
        self.overrides = dict(wanted)
        if query.database and query.database != self.database:
            self.handle.use(query.database)
            self.database = query.database


@dataclass(frozen=True)
class Access:
    """How a query runs: read-only for GET, external tables, and the analyst's lock (the
    handle turns readonly=1 once URL settings and external tables are in place)."""

    readonly: bool = False
    analyst: bool = False
    external: tuple[ExternalTable, ...] = ()


def _open_prepared(engine: Engine, query: QueryParams, access: Access = Access()) -> Handle:
    # readonly=2 would forbid the analyst's later switch to readonly=1
    handle = engine.open(query.database, access.readonly and not access.analyst)
    try:
        handle.apply_settings(query.settings)
        for table in access.external:
            handle.load_external(table)
        if access.analyst:
            handle.lock_readonly()
    except BaseException:
        handle.close()
        raise
    return handle


def _run_once(engine: Engine, query: QueryParams, access: Access, sql: str, fmt: str) -> Outcome:
    """The common path in one thread hop: open, set, run, close."""
    handle = _open_prepared(engine, query, access)
    try:
        return handle.query(sql, fmt, query.params)
    finally:
        handle.close()


def _run_in_session(
    handle: Handle, access: Access, sql: str, fmt: str, query: QueryParams
) -> Outcome:
    """External tables live for one query, in a session too."""
    tables = list(access.external)
    try:
        for table in tables:
            handle.load_external(table)
        return handle.query(sql, fmt, query.params)
    finally:
        handle.drop_external(tables)


class Runner:
    def __init__(self, engine: Engine, workers: int) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chdb")
        self._sessions: dict[str, Session] = {}

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def query(
        self, query: QueryParams, sql: str, fmt: str, access: Access = Access()
    ) -> Outcome:
        """An analyst's query never uses a session: its handle is locked read-only."""
        if query.session_id is None or access.analyst:
            return await self.call(_run_once, self.engine, query, access, sql, fmt)
        async with self._session(query) as session:
            if first_keyword(sql) == "USE":
                session.database = None
            return await self.call(_run_in_session, session.handle, access, sql, fmt, query)

    async def insert(
        self, query: QueryParams, head: InsertHead, first: bytes, rest: AsyncIterator[bytes]
    ) -> Outcome:
        """Stream the request's data into the engine while it is still arriving."""
        async with self._handle(query) as handle:
            inserter = await self.call(handle.begin_insert, head.statement, head.fmt)
            piece = None if head.fmt.lower() in WHOLE_BODY_FORMATS else INSERT_CHUNK_BYTES
            try:
                pending = bytearray(first)
                async for chunk in rest:
                    pending += chunk
                    if piece is not None and len(pending) >= piece:
                        await self.call(inserter.append, bytes(pending))
                        pending.clear()
                if pending:
                    await self.call(inserter.append, bytes(pending))
                return await self.call(inserter.finish)
            except BaseException:
                await self.call(inserter.cancel)
                raise

    @asynccontextmanager
    async def _handle(self, query: QueryParams) -> AsyncIterator[Handle]:
        if query.session_id is not None:
            async with self._session(query) as session:
                yield session.handle
            return
        handle = await self.call(_open_prepared, self.engine, query)
        try:
            yield handle
        finally:
            await self.call(handle.close)

    @asynccontextmanager
    async def _session(self, query: QueryParams) -> AsyncIterator[Session]:
        session = await self._locked_session(query)
        try:
            await self.call(session.prepare, query)
            yield session
        finally:
            session.timeout_s = query.session_timeout_s
            session.last_used = time.monotonic()
            session.lock.release()

    async def _locked_session(self, query: QueryParams) -> Session:
        """The request's session, created if new, with its lock held."""
        sid = query.session_id
        assert sid is not None
        while True:
            session = self._sessions.get(sid)
            if session is None:
                handle = await self.call(self.engine.open)
                # another request may have created it while we waited for the pool
                session = self._sessions.setdefault(
                    sid, Session(handle, query.session_timeout_s, time.monotonic())
                )
                if session.handle is not handle:
                    await self.call(handle.close)
                self._evict_beyond(MAX_SESSIONS)
            try:
                await asyncio.wait_for(session.lock.acquire(), SESSION_LOCK_WAIT_S)
            except TimeoutError:
                raise ProtocolError(
                    SESSION_IS_LOCKED, f"Session {sid} is locked by a concurrent client."
                ) from None
            if self._sessions.get(sid) is session:
                return session
            session.lock.release()  # expired or evicted while we waited: start a new one

    def _evict_beyond(self, limit: int) -> None:
        idle = sorted(
            (s.last_used, sid) for sid, s in self._sessions.items() if not s.lock.locked()
        )
        for _, sid in idle[: max(0, len(self._sessions) - limit)]:
            self._pool.submit(self._sessions.pop(sid).handle.close)

    async def expire_sessions(self) -> int:
        now = time.monotonic()
        gone = [sid for sid, s in self._sessions.items() if s.expired(now)]
        for sid in gone:
            await self.call(self._sessions.pop(sid).handle.close)
        return len(gone)

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            await self.call(session.handle.close)
        self._sessions.clear()
        self._pool.shutdown(wait=True)
        self.engine.close()
