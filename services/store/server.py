"""ClickHouse's HTTP interface over the engine, on aiohttp: what clickhouse-connect, curl and
analysts' ClickHouse tools speak. Wiring only; the rules live in protocol, sqltext and codecs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.store.codecs import (
    BodyDecoder,
    CorruptBody,
    UnsupportedEncoding,
    body_decoder,
    encode,
    response_encoding,
)
from services.store.engine import Engine, EngineError, Outcome
from services.store.metrics import StoreMetrics
from services.store.protocol import (
    BAD_ARGUMENTS,
    DEFAULT_FORMAT,
    NOT_IMPLEMENTED,
    ProtocolError,
    QueryParams,
    authenticate,
    content_type,
    credentials,
    error_body,
    http_status,
    parse_params,
    summary_header,
)
from services.store.runner import Runner
from services.store.sqltext import NEED_MORE, InsertHead, output_format, split_insert

log = logging.getLogger("llmops.store")

MAX_QUERY_BYTES = 64 << 20  # a query (not insert data) held in memory at once
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
    user: str = "default"
    password: str | None = None
    workers: int = 8

    @property
    def engine_path(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


async def _decoded(request: web.Request, decoder: BodyDecoder) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        plain = decoder.feed(chunk)
        if plain:
            yield plain
    decoder.finish()


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
    def __init__(self, config: StoreConfig, runner: Runner, metrics: StoreMetrics) -> None:
        self.config = config
        self.runner = runner
        self.metrics = metrics
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
        started = time.perf_counter()
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        kind = "query"
        body: AsyncIterator[bytes] | None = None
        self.metrics.in_flight.inc()
        try:
            query = parse_params(request.query.items())
            authenticate(
                credentials(request.headers, query), self.config.user, self.config.password
            )
            if request.method == "GET" and not query.query:
                return web.Response(text=OK)
            if request.content_type.startswith("multipart/"):
                raise ProtocolError(NOT_IMPLEMENTED, "External data (multipart) is not supported")
            body = _decoded(request, body_decoder(request.headers.get("Content-Encoding")))
            prefix = (query.query + "\n").encode() if query.query else b""
            head, insert, _ = await _read_head(prefix, body, inserts=request.method != "GET")
            if insert is not None:
                kind = "insert"
                data = head[insert.data_offset :]
                outcome = await self.runner.insert(query, insert, data, body)
                return self._ok(query_id, outcome, None)
            sql = await _read_rest(head, body)
            if not sql.strip():
                raise ProtocolError(SYNTAX_ERROR, "Empty query. (SYNTAX_ERROR)")
            readonly = request.method == "GET" and query.session_id is None
            outcome = await self.runner.query(query, sql, query.default_format, readonly)
            fmt = output_format(sql, query.default_format)
            return await self._result(request, query, query_id, outcome, fmt)
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
        self, request: web.Request, query_id: str, code: int, message: str, kind: str
    ) -> web.Response:
        # Read what the client is still sending, so it gets this answer and not a reset.
        with contextlib.suppress(Exception):
            async for _ in request.content.iter_any():
                pass
        self.metrics.queries.labels(kind, "error").inc()
        self.metrics.errors.labels(str(code)).inc()
        headers = dict(self._common)
        headers["X-ClickHouse-Query-Id"] = query_id
        headers["X-ClickHouse-Exception-Code"] = str(code)
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
    engine = await loop.run_in_executor(None, Engine, config.engine_path)
    runner = Runner(engine, config.workers)
    server = StoreServer(config, runner, StoreMetrics(CollectorRegistry()))
    # auto_decompress off: bodies are decoded here, ClickHouse-style (lz4 too, across frames)
    app_runner = web.AppRunner(
        server.app(), access_log=None, handle_signals=False, auto_decompress=False
    )
    await app_runner.setup()
    try:
        site = web.TCPSite(app_runner, config.host, config.port, reuse_address=True)
        await site.start()
        log.info(
            "store: ClickHouse HTTP interface on %s (engine %s, data %s%s)",
            config.url,
            engine.version,
            config.engine_path,
            ", password required" if config.password is not None else "",
        )
        await stop.wait()
        log.info("store: shutting down")
    finally:
        await app_runner.cleanup()
        await runner.close()
