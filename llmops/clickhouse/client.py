"""ClickHouse, the one way every process reaches it: clickhouse-connect from a URL.

`http://host:port/dbname` is the embedded store (chDB behind ClickHouse's HTTP interface) or a
real ClickHouse server alike; user and password ride in the URL. On top of the client:
creating our database, numbered migrations applied once each, and batched columnar
(Arrow) inserts. Rows are keyed in ReplacingMergeTree tables, so a replayed insert (at-least-once
delivery) collapses instead of counting twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from llmops.clickhouse.credentials import SERVICE_USER, load_credentials
from llmops.config import LOOPBACK_HOSTS, Settings

# Package data beside this module: found the same way from a wheel or an editable checkout.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATIONS_TABLE = "schema_migrations"
_MIGRATION_FILE = re.compile(r"^(\d+)_[A-Za-z0-9_\-]+\.sql$")

SCHEMA_MIGRATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY name
"""


class MigrationError(RuntimeError):
    """The migrations on disk disagree with what the database has applied."""


# ---------------------------------------------------------------- connections


def database_of(url: str) -> str:
    """The database a URL names (its first path segment), "" if none."""
    return unquote(urlsplit(url).path.lstrip("/").split("/")[0])


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def login_for(url: str, settings: Settings) -> tuple[str, str] | None:
    """Who connects to `url` when it carries no user: CLICKHOUSE_USER/PASSWORD if set, else,
    for the embedded store (loopback, its port), the service account of data_dir. None: the
    URL's own user:password (or clickhouse-connect's defaults) apply. Processes pass what it
    returns as `login` to `connect`, `ensure_database` and `migrate`."""
    parts = urlsplit(url)
    if parts.username is not None:
        return None
    if settings.clickhouse_user is not None or settings.clickhouse_password is not None:
        return settings.clickhouse_user or SERVICE_USER, settings.clickhouse_password or ""
    if parts.hostname not in LOOPBACK_HOSTS or parts.port != settings.store_port:
        return None
    found = load_credentials(settings.data_dir)
    if found is None:
        return None
    return found.service_user, settings.store_password or found.service_password


def connect_settings(settings: Settings, **kwargs: Any) -> Client:
    """A client on the store `settings` name (CLICKHOUSE_URL), logged in as `login_for` says."""
    url = settings.clickhouse_url
    return connect(url, login=login_for(url, settings), **kwargs)


def connect(url: str, *, login: tuple[str, str] | None = None, **kwargs: Any) -> Client:
    """A client for `url` (http(s)://[user:password@]host:port/dbname[?setting=value]).

    A URL without user:password logs in as `login` (user, password; `login_for` finds it
    from the caller's settings) or, if None, as clickhouse-connect's defaults. Compression is
    on; no HTTP
    session is pinned, so one client may serve several threads (a ClickHouse session admits
    one query at a time). kwargs go to clickhouse-connect.
    """
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"ClickHouse URL must be http:// or https://, got {url!r}")
    options: dict[str, Any] = {"compress": True, "autogenerate_session_id": False}
    if login is not None and urlsplit(url).username is None:
        options["username"], options["password"] = login
    options.update(kwargs)
    client: Client = clickhouse_connect.get_client(dsn=url, **options)
    return client


def ensure_database(url: str, *, login: tuple[str, str] | None = None) -> Client:
    """Create the database named in `url` if missing; return a client on it."""
    database = database_of(url)
    if not database or database == "default":
        raise ValueError(
            f"name a database of our own in the ClickHouse URL (…/llmops), not {database!r}: {url}"
        )
    admin = connect(with_database(url, "default"), login=login)
    try:
        admin.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    finally:
        admin.close()
    return connect(url, login=login)


# ---------------------------------------------------------------- migrations


def split_statements(sql: str) -> list[str]:
    """Statements of a SQL file, comments removed, split at `;` outside literals and names."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end  # keep the newline: it separates tokens
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ValueError("unterminated /* comment */ in SQL")
            current.append(" ")
            i = end + 2
        elif char in "'\"`":
            j = i + 1
            while j < n and sql[j] != char:
                j += 2 if sql[j] == "\\" else 1
            if j >= n:
                raise ValueError(f"unterminated {char} literal in SQL")
            current.append(sql[i : j + 1])
            i = j + 1
        elif char == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The numbered `.sql` files of `directory`, in order; numbers must be unique."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_what.sql")
        number = int(match.group(1))
        if number in found:
            raise MigrationError(f"{path.name} and {found[number].name} share number {number}")
        found[number] = Migration(number, path.name, path.read_text(encoding="utf-8"))
    return [found[k] for k in sorted(found)]


def applied_migrations(client: Client) -> dict[str, str]:
    client.command(SCHEMA_MIGRATIONS_DDL)
    result = client.query(f"SELECT name, checksum FROM {MIGRATIONS_TABLE} FINAL")
    return {str(name): str(checksum) for name, checksum in result.result_rows}


def apply_migrations(client: Client, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply, in order and one statement per command, the migrations not applied yet.

    Returns the names applied now. A migration already applied whose file changed since is
    an error: applied migrations are immutable, a change goes in a new numbered file.
    Statements should be idempotent (IF NOT EXISTS) so a run cut short can simply be rerun.
    """
    migrations = load_migrations(directory)
    applied = applied_migrations(client)
    for migration in migrations:
        recorded = applied.get(migration.name)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} changed after it was applied "
                f"(applied {recorded[:12]}, file {migration.checksum[:12]}): "
                "put the change in a new numbered migration"
            )
    done: list[str] = []
    for migration in migrations:
        if migration.name in applied:
            continue
        for statement in split_statements(migration.sql):
            client.command(statement)
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.name, migration.checksum]],
            column_names=["name", "checksum"],
        )
        done.append(migration.name)
    return done


def migrate(url: str, *, login: tuple[str, str] | None = None) -> list[str]:
    """Create the database `url` names if missing and apply the migrations not applied yet;
    returns the names applied now. The one way every process (CLI, stack, workers) migrates."""
    client = ensure_database(url, login=login)
    try:
        return apply_migrations(client)
    finally:
        client.close()


# ---------------------------------------------------------------- inserts


def _arrow_type(values: Sequence[Any]) -> pa.DataType | None:
    """The Arrow type for a column, or None to let Arrow infer it (scalars). The server
    converts Arrow types to the table's (bool -> UInt8, int64 -> UInt32, us -> ms...)."""
    for value in values:
        if isinstance(value, Mapping):
            return pa.map_(pa.string(), _map_value_type(values))
        if value is not None:
            return None
    return None


def _map_value_type(values: Sequence[Any]) -> pa.DataType:
    return _element_type(
        [v for value in values if isinstance(value, Mapping) for v in value.values()]
    )


def _element_type(samples: Sequence[Any]) -> pa.DataType:
    """The Arrow type of a map's values (or a list's items): the first value's, a map of
    maps or of lists looking through all of them (Map(K, Map(...)), Map(K, Array(...)))."""
    for sample in samples:
        if isinstance(sample, bool):
            return pa.bool_()
        if isinstance(sample, int):
            return pa.int64()
        if isinstance(sample, float):
            return pa.float64()
        if isinstance(sample, Mapping):
            return pa.map_(pa.string(), _map_value_type(samples))
        if isinstance(sample, list | tuple):
            items = [x for s in samples if isinstance(s, list | tuple) for x in s]
            return pa.list_(_element_type(items))
        return pa.string()
    return pa.string()


def rows_to_arrow(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pa.Table:
    """Columns of `rows` as an Arrow table. A column that is None in every row is left out,
    so the table's default (NULL for Nullable) applies."""
    arrays: dict[str, pa.Array] = {}
    for column in columns:
        values = [row[column] for row in rows]
        if all(value is None for value in values):
            continue
        arrays[column] = pa.array(values, type=_arrow_type(values))
    return pa.table(arrays)


def insert_rows(
    client: Client,
    table: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
) -> int:
    """Insert `rows` (mappings with at least `columns`) in one columnar Arrow insert."""
    if not rows:
        return 0
    client.insert_arrow(table, rows_to_arrow(rows, columns))
    return len(rows)


T = TypeVar("T")


class BatchBuffer(Generic[T]):
    """Rows waiting to be written: due when `max_rows` are in or the oldest is `max_age_s`
    old. Pure: the caller passes the clock and does the IO."""

    def __init__(self, max_rows: int, max_age_s: float) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._items: list[T] = []
        self._oldest: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T, now: float) -> None:
        if self._oldest is None:
            self._oldest = now
        self._items.append(item)

    def due(self, now: float) -> bool:
        if not self._items:
            return False
        assert self._oldest is not None
        return len(self._items) >= self.max_rows or now - self._oldest >= self.max_age_s

    def wait_s(self, now: float) -> float | None:
        """Seconds until the age limit makes the buffer due; None while it is empty."""
        if self._oldest is None:
            return None
        return max(0.0, self._oldest + self.max_age_s - now)

    def drain(self) -> list[T]:
        items, self._items, self._oldest = self._items, [], None
        return items
