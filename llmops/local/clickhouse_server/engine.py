"""The ClickHouse engine (chDB) on one data path, behind blocking calls the server runs in threads.

chDB allows one data path per process and any number of connection handles to it. Each handle
has its own session state (current database, SET values, temporary tables), so a request gets
a fresh handle (~0.15 ms) and its URL settings die with it; an HTTP session keeps one handle.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chdb

from llmops.local.clickhouse_server.external import ExternalTable
from llmops.local.clickhouse_server.protocol import error_code, error_message, quote_setting

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# Values rows hold literals only: by default the engine evaluates expressions in them, and
# `INSERT ... VALUES (file('/etc/passwd'))` would read files past the SQL guard, which never
# reads insert data. (The guard refuses changing these settings.)
LITERAL_VALUES = (
    "input_format_values_interpret_expressions=0",
    "input_format_values_deduce_templates_of_expressions=0",
)


class EngineError(Exception):
    """An error the engine reported, with its ClickHouse code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _engine_error(exc: Exception) -> EngineError:
    text = str(exc)
    return EngineError(error_code(text), error_message(text))


@dataclass(frozen=True, slots=True)
class Outcome:
    body: bytes
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_s: float = 0.0


def _quote_name(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Handle:
    """One chDB connection. Not thread-safe: one request uses it at a time."""

    def __init__(self, conn_str: str) -> None:
        try:
            self._conn: Any = chdb.connect(conn_str)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise _engine_error(exc) from exc
        self.closed = False

    def execute(
        self, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None
    ) -> Any:
        try:
            return self._conn.query(sql, fmt, params=params or {})
        except Exception as exc:
            raise _engine_error(exc) from exc

    def use(self, database: str) -> None:
        self.execute(f"USE {_quote_name(database)}")

    def apply_settings(self, settings: dict[str, str]) -> None:
        for name, value in settings.items():
            self.execute(f"SET {name} = {quote_setting(value)}")

    def snapshot_settings(self, names: list[str]) -> dict[str, str | None]:
        """Current values of settings that were changed on this handle (None: at default)."""
        if not names:
            return {}
        listed = ", ".join(quote_setting(n) for n in names)
        result = self.execute(
            f"SELECT name, value, changed FROM system.settings WHERE name IN ({listed})",
            "JSONCompactEachRow",
        )
        saved: dict[str, str | None] = dict.fromkeys(names)
        for line in result.bytes().splitlines():
            name, value, changed = json.loads(line)
            saved[name] = value if changed else None
        return saved

    def restore_settings(self, saved: dict[str, str | None]) -> None:
        for name, value in saved.items():
            literal = "DEFAULT" if value is None else quote_setting(value)
            self.execute(f"SET {name} = {literal}")

    def query(self, sql: str, fmt: str, params: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        result = self.execute(sql, fmt, params)
        body = result.bytes() or b""
        return Outcome(
            body=body,
            read_rows=int(result.rows_read()),
            read_bytes=int(result.bytes_read()),
            written_rows=int(result.rows_written()),
            written_bytes=int(result.bytes_written()),
            elapsed_s=time.perf_counter() - started,
        )

    def begin_insert(self, statement: str, fmt: str) -> Inserter:
        try:
            return Inserter(self._conn.send_insert(statement, fmt))
        except Exception as exc:
            raise _engine_error(exc) from exc

    def load_external(self, table: ExternalTable) -> None:
        """A request's external data as a temporary table of this handle."""
        self.execute(table.create_statement())
        inserter = self.begin_insert(f"INSERT INTO {_quote_name(table.name)}", table.fmt)
        try:
            inserter.append(table.data)
            inserter.finish()
        except BaseException:
            inserter.cancel()
            raise

    def drop_external(self, tables: list[ExternalTable]) -> None:
        for table in tables:
            self.execute(f"DROP TEMPORARY TABLE IF EXISTS {_quote_name(table.name)}")

    def lock_readonly(self) -> None:
        """From now on the engine refuses writes, DDL, table functions and setting changes
        on this handle (readonly=1): what an analyst's query runs under."""
        self.execute("SET readonly = 1")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._conn.close()


class Inserter:
    """A streaming INSERT: data bytes in the statement's format, committed by `finish`."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._started = time.perf_counter()

    def append(self, data: bytes) -> None:
        try:
            self._stream.append(data)
        except Exception as exc:
            raise _engine_error(exc) from exc

    def finish(self) -> Outcome:
        try:
            result = self._stream.finish()
        except Exception as exc:
            raise _engine_error(exc) from exc
        return Outcome(
            body=b"",
            written_rows=int(result.rows_written),
            written_bytes=int(result.bytes_written),
            elapsed_s=time.perf_counter() - self._started,
        )

    def cancel(self) -> None:
        # cancelling an insert that already failed is harmless
        with contextlib.suppress(Exception):
            self._stream.cancel()


class Engine:
    """Owns the data path for this process: one root handle keeps the engine open."""

    def __init__(self, data_path: Path, user_files: Path | None = None) -> None:
        """user_files: where relative file paths would resolve (an empty directory, so even
        a table function that slipped past the HTTP front finds nothing)."""
        data_path.mkdir(parents=True, exist_ok=True)
        self.path = str(data_path.resolve())
        options = ""
        if user_files is not None:
            user_files.mkdir(parents=True, exist_ok=True)
            options = f"?user_files_path={user_files.resolve()}"
        self._root = Handle(self.path + options)
        version, timezone = (
            self._root.execute("SELECT version(), timezone()").bytes().decode().strip().split("\t")
        )
        self.version: str = version
        self.timezone: str = timezone

    def catalog(self) -> list[str]:
        """Names of every table function, table engine and database engine the engine has."""
        result = self._root.execute(
            "SELECT name FROM system.table_functions UNION ALL "
            "SELECT name FROM system.table_engines UNION ALL "
            "SELECT name FROM system.database_engines"
        )
        return str(result.bytes().decode()).split()

    def open(self, database: str | None = None, readonly: bool = False) -> Handle:
        """A fresh handle, already in `database` (which must exist) and read-only if asked."""
        options = list(LITERAL_VALUES)
        if database and _PLAIN_NAME.match(database):
            options.append(f"database={database}")
        if readonly:
            options.append("readonly=2")
        handle = Handle(self.path + "?" + "&".join(options))
        if database and not _PLAIN_NAME.match(database):
            try:
                handle.use(database)
            except EngineError:
                handle.close()
                raise
        return handle

    def close(self) -> None:
        self._root.close()
