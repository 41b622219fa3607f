"""ClickHouse's HTTP interface over the engine, on aiohttp: what clickhouse-connect, curl and
analysts' ClickHouse tools speak. Wiring only; the rules live in protocol, sqltext and codecs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from llmops.clickhouse.credentials import credentials_path, load_or_create_credentials
from llmops.local.clickhouse_server.access import READONLY, Account, Accounts, AnalystLimits, Role
from llmops.local.clickhouse_server.codecs import (
    BodyDecoder,
    CorruptBody,
    UnsupportedEncoding,
    body_decoder,
    encode,
    response_encoding,
)
from llmops.local.clickhouse_server.engine import Engine, EngineError, Outcome
from llmops.local.clickhouse_server.external import (
    ExternalTable,
    boundary_of,
    parse_multipart,
    split_form,
)
from llmops.local.clickhouse_server.guard import (
    ACCESS_DENIED,
    INLINE_CHECK_CHARS,
    SqlGuard,
    denied_setting,
)
from llmops.local.clickhouse_server.metrics import StoreMetrics
from llmops.local.clickhouse_server.protocol import (
    BAD_ARGUMENTS,
    DEFAULT_FORMAT,
    ProtocolError,
    QueryParams,
    content_type,
    credentials,
    error_body,
    http_status,
    parse_params,
    summary_header,
)
from llmops.local.clickhouse_server.runner import Access, Runner
from llmops.local.clickhouse_server.sqltext import (
    NEED_MORE,
    InsertHead,
    output_format,
    split_insert,
)

log = logging.getLogger("llmops.clickhouse.client")

MAX_QUERY_BYTES = 64 << 20  # a query (not insert data) held in memory at once
TOO_MANY_ROWS_OR_BYTES = 396
MAX_HEAD_BYTES = 1 << 20  # where an INSERT's data starts must be known within this
SYNTAX_ERROR = 62
CANNOT_DECOMPRESS = 271
SESSION_SWEEP_S = 1.0
OK = "Ok.\n"


@dataclass(frozen=True)
class StoreConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 18123
    password: str | None = None  # the service user's, instead of the generated one
    workers: int = 8
    max_body_bytes: int = 64 << 20  # decoded request body
    max_result_bytes: int = 256 << 20
    allowed_origins: frozenset[str] = frozenset()  # browser origins allowed; none by default
    analyst_limits: AnalystLimits = field(default_factory=AnalystLimits)

    @property
    def engine_path(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def user_files(self) -> Path:
        return self.data_dir / "user_files"  # kept empty: relative file paths resolve here

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def accounts(self) -> Accounts:
        """The service and analyst accounts of data_dir (generated on the first start)."""
        found = load_or_create_credentials(self.data_dir)
        return Accounts(
            (
                Account(found.service_user, self.password or found.service_password, Role.SERVICE),
                Account(found.analyst_user, found.analyst_password, Role.ANALYST),
            ),
            self.analyst_limits,
        )


class BodyTooLarge(ProtocolError):
    def __init__(self, limit: int) -> None:
        super().__init__(BAD_ARGUMENTS, f"Request body is larger than {limit} bytes")


async def _decoded(request: web.Request, decoder: BodyDecoder, limit: int) -> AsyncIterator[bytes]:
    """The request body, decompressed, refused once it decodes to more than `limit` bytes
    (counted after decoding: a small compressed body may expand to anything)."""
    size = 0
    async for chunk in request.content.iter_any():
        plain = decoder.feed(chunk)
        size += len(plain)
        if size > limit:
            raise BodyTooLarge(limit)
        if plain:
            yield plain
    decoder.finish()


async def _whole(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in body])


def _origin_refused(headers: Mapping[str, str], allowed: frozenset[str]) -> str | None:
    """Why a browser's cross-origin request is refused (None: not one, or allowed). A page
    elsewhere sends Origin on POST; Sec-Fetch-Site marks even a GET from <img> or a link."""
    origin = headers.get("Origin")
    if origin is not None:
        return None if origin in allowed else f"origin {origin!r} is not allowed"
    if headers.get("Sec-Fetch-Site", "none") not in ("none", "same-origin"):
        return "cross-site browser requests are not allowed"
    return None


async def _read_head(
    prefix: bytes, body: AsyncIterator[bytes], inserts: bool
) -> tuple[bytes, InsertHead | None, bool]:
    """Read just enough of the request to tell an INSERT's inline data from a query."""
    head = bytearray(prefix)
    eof = False
    while True:
        split = split_insert(bytes(head), final=eof) if inserts else None
        if split is not NEED_MORE:
            return bytes(head), split, eof
        if len(head) > MAX_HEAD_BYTES:
            return bytes(head), None, eof
        chunk = await anext(body, None)
        if chunk is None:
            eof = True
        else:
            head += chunk


async def _read_rest(head: bytes, body: AsyncIterator[bytes]) -> str:
    parts = [head]
    size = len(head)
    async for chunk in body:
        size += len(chunk)
        if size > MAX_QUERY_BYTES:
            raise ProtocolError(BAD_ARGUMENTS, f"Query is longer than {MAX_QUERY_BYTES} bytes")
        parts.append(chunk)
    try:
        return b"".join(parts).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(BAD_ARGUMENTS, "The query is not valid UTF-8") from None


class StoreServer:
    def __init__(
        self,
        config: StoreConfig,
        runner: Runner,
        metrics: StoreMetrics,
        accounts: Accounts,
        guard: SqlGuard,
    ) -> None:
        self.config = config
        self.runner = runner
        self.metrics = metrics
        self.accounts = accounts
        self.guard = guard
        self._common = {
            "X-ClickHouse-Server-Display-Name": "llmops-store",
            "X-ClickHouse-Timezone": runner.engine.timezone,
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/ping", self.ping)
        app.router.add_route("GET", "/replicas_status", self.ping)
        app.router.add_route("GET", "/metrics", self.prometheus)
        app.router.add_route("*", "/", self.handle)
        app.router.add_route("*", "/{tail:.+}", self.no_handler)
        app.cleanup_ctx.append(self._sweep_sessions)
        return app

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text=OK)

    async def prometheus(self, request: web.Request) -> web.Response:
        self.metrics.sessions.set(self.runner.session_count)
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def no_handler(self, request: web.Request) -> web.Response:
        text = f"There is no handle {request.path}\n\nUse / or /ping for health checks.\n"
        return web.Response(status=404, text=text)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._handle(request)
        origin = request.headers.get("Origin")
        if origin is not None and origin in self.config.allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin  # a page let in reads it
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        kind = "query"
        body: AsyncIterator[bytes] | None = None
        self.metrics.in_flight.inc()
        try:
            refused = _origin_refused(request.headers, self.config.allowed_origins)
            if refused is not None or request.method == "OPTIONS":
                raise ProtocolError(ACCESS_DENIED, refused or "CORS preflight is not allowed")
            url = request.query
            login = QueryParams(user=url.get("user"), password=url.get("password"))
            account = self.accounts.check(credentials(request.headers, login))
            body = _decoded(
                request,
                body_decoder(request.headers.get("Content-Encoding")),
                self.config.max_body_bytes,
            )
            external: list[ExternalTable] = []
            if request.content_type.startswith("multipart/"):
                parts = parse_multipart(
                    await _whole(body), boundary_of(request.headers.get("Content-Type", ""))
                )
                pairs, external = split_form(url.items(), parts)
                query = self._checked_params(parse_params(pairs), account)
                return await self._query(request, query, query_id, query.query, account, external)
            query = self._checked_params(parse_params(url.items()), account)
            if request.method == "GET" and not query.query:
                return web.Response(text=OK)
            prefix = (query.query + "\n").encode() if query.query else b""
            head, insert, _ = await _read_head(prefix, body, inserts=request.method != "GET")
            if insert is not None:
                kind = "insert"
                self.guard.check(insert.statement, query.params)
                if account.role is Role.ANALYST:
                    raise ProtocolError(READONLY, "Cannot execute query in readonly mode")
                data = head[insert.data_offset :]
                outcome = await self.runner.insert(query, insert, data, body)
                return self._ok(query_id, outcome, None)
            sql = await _read_rest(head, body)
            return await self._query(request, query, query_id, sql, account, external)
        except BodyTooLarge as exc:
            return await self._error(request, query_id, exc.code, str(exc), kind, drain=False)
        except (ProtocolError, EngineError) as exc:
            return await self._error(request, query_id, exc.code, str(exc), kind)
        except UnsupportedEncoding as exc:
            return await self._error(request, query_id, BAD_ARGUMENTS, str(exc), kind)
        except CorruptBody as exc:
            return await self._error(request, query_id, CANNOT_DECOMPRESS, str(exc), kind)
        finally:
            if body is not None:
                await body.aclose()  # type: ignore[attr-defined]
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(kind).observe(time.perf_counter() - started)

    def _checked_params(self, query: QueryParams, account: Account) -> QueryParams:
        """URL settings that name files are refused; an analyst's are capped, and an
        analyst never holds a session (its handle is locked read-only per query)."""
        for name in query.settings:
            if denied_setting(name):
                raise ProtocolError(ACCESS_DENIED, f"Not enough privileges: setting {name}")
        if account.role is not Role.ANALYST:
            return query
        settings = self.accounts.limits.settings(query.settings)
        return replace(query, settings=settings, session_id=None)

    async def _query(
        self,
        request: web.Request,
        query: QueryParams,
        query_id: str,
        sql: str,
        account: Account,
        external: list[ExternalTable],
    ) -> web.Response:
        if not sql.strip():
            raise ProtocolError(SYNTAX_ERROR, "Empty query. (SYNTAX_ERROR)")
        analyst = account.role is Role.ANALYST
        if len(sql) > INLINE_CHECK_CHARS:
            await self.runner.call(self.guard.check, sql, query.params, analyst)
        else:
            self.guard.check(sql, query.params, analyst)
        for table in external:
            self.guard.check(table.create_statement())
        access = Access(
            readonly=request.method == "GET" and query.session_id is None,
            analyst=account.role is Role.ANALYST,
            external=tuple(external),
        )
        outcome = await self.runner.query(query, sql, query.default_format, access)
        if len(outcome.body) > self.config.max_result_bytes:
            raise ProtocolError(
                TOO_MANY_ROWS_OR_BYTES,
                f"Limit for result exceeded: {len(outcome.body)} bytes, "
                f"maximum {self.config.max_result_bytes}. (TOO_MANY_ROWS_OR_BYTES)",
            )
        fmt = output_format(sql, query.default_format)
        return await self._result(request, query, query_id, outcome, fmt)

    def _ok(
        self,
        query_id: str,
        outcome: Outcome,
        fmt: str | None,
        encoded: tuple[str, bytes] | None = None,
    ) -> web.Response:
        """fmt None: an insert, which has no result format. encoded: (encoding, body)."""
        self.metrics.queries.labels("query" if fmt else "insert", "ok").inc()
        self.metrics.read_rows.inc(outcome.read_rows)
        self.metrics.written_rows.inc(outcome.written_rows)
        headers = dict(self._common)
        headers["X-ClickHouse-Query-Id"] = query_id
        headers["X-ClickHouse-Summary"] = summary_header(
            read_rows=outcome.read_rows,
            read_bytes=outcome.read_bytes,
            written_rows=outcome.written_rows,
            written_bytes=outcome.written_bytes,
            result_bytes=len(outcome.body),
            elapsed_s=outcome.elapsed_s,
        )
        headers["Content-Type"] = content_type(fmt or DEFAULT_FORMAT)
        if fmt is not None:
            headers["X-ClickHouse-Format"] = fmt
        body = outcome.body
        if encoded is not None:
            headers["Content-Encoding"], body = encoded
        return web.Response(body=body, headers=headers)

    async def _result(
        self, request: web.Request, query: QueryParams, query_id: str, outcome: Outcome, fmt: str
    ) -> web.Response:
        encoding = response_encoding(request.headers.get("Accept-Encoding"))
        if not (query.compress_response and encoding and outcome.body):
            return self._ok(query_id, outcome, fmt)
        compressed = await self.runner.call(encode, outcome.body, encoding)
        return self._ok(query_id, outcome, fmt, (encoding, compressed))

    async def _error(
        self,
        request: web.Request,
        query_id: str,
        code: int,
        message: str,
        kind: str,
        drain: bool = True,
    ) -> web.Response:
        # Read what the client is still sending, so it gets this answer and not a reset;
        # but not a body already too large: that connection is closed instead.
        if drain:
            with contextlib.suppress(Exception):
                async for _ in request.content.iter_any():
                    pass
        self.metrics.queries.labels(kind, "error").inc()
        self.metrics.errors.labels(str(code)).inc()
        headers = dict(self._common)
        headers["X-ClickHouse-Query-Id"] = query_id
        headers["X-ClickHouse-Exception-Code"] = str(code)
        if not drain:
            headers["Connection"] = "close"
        return web.Response(
            status=http_status(code),
            body=error_body(code, message, self.runner.engine.version),
            headers=headers,
            content_type="text/plain",
            charset="utf-8",
        )

    async def _sweep_sessions(self, app: web.Application) -> AsyncIterator[None]:
        async def sweep() -> None:
            while True:
                await asyncio.sleep(SESSION_SWEEP_S)
                await self.runner.expire_sessions()

        task = asyncio.create_task(sweep())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def serve(config: StoreConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set, or until SIGTERM/SIGINT; then finish requests and close."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    accounts = config.accounts()
    engine = await loop.run_in_executor(None, Engine, config.engine_path, config.user_files)
    guard = SqlGuard.from_catalog(await loop.run_in_executor(None, engine.catalog))
    runner = Runner(engine, config.workers)
    server = StoreServer(config, runner, StoreMetrics(CollectorRegistry()), accounts, guard)
    # auto_decompress off: bodies are decoded here, ClickHouse-style (lz4 too, across frames)
    app_runner = web.AppRunner(
        server.app(), access_log=None, handle_signals=False, auto_decompress=False
    )
    await app_runner.setup()
    try:
        site = web.TCPSite(app_runner, config.host, config.port, reuse_address=True)
        await site.start()
        log.info(
            "store: ClickHouse HTTP interface on %s (engine %s, data %s; users %s; "
            "credentials in %s)",
            config.url,
            engine.version,
            config.engine_path,
            ", ".join(f"{a.user} ({a.role.value})" for a in accounts.accounts),
            credentials_path(config.data_dir),
        )
        await stop.wait()
        log.info("store: shutting down")
    finally:
        await app_runner.cleanup()
        await runner.close()
