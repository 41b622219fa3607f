"""External data, as ClickHouse's HTTP interface takes it: a multipart/form-data POST whose
file parts are temporary tables for one query (named by the part, shaped by `<name>_structure`
or `<name>_types`, in `<name>_format`), and whose plain fields are parameters like the URL's
(`query`, `param_*`: clickhouse-connect sends long parameter lists this way)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from llmops.local.clickhouse_server.protocol import BAD_ARGUMENTS, DEFAULT_FORMAT, ProtocolError
from llmops.local.clickhouse_server.sqltext import NEED_MORE, Token, tokens

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(r';\s*([A-Za-z*]+)="((?:[^"\\]|\\.)*)"')
MAX_PARTS = 256


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None: a plain form field
    data: bytes


@dataclass(frozen=True)
class ExternalTable:
    name: str
    columns: str  # SQL column list: "a UInt32, b String"
    fmt: str
    data: bytes

    def create_statement(self) -> str:
        return f"CREATE TEMPORARY TABLE `{self.name}` ({self.columns}) ENGINE = Memory"


def _bad(message: str) -> ProtocolError:
    return ProtocolError(BAD_ARGUMENTS, message)


def boundary_of(content_type: str) -> bytes:
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise _bad("multipart/form-data without a boundary")
    return found.group(1).strip().encode("latin-1")


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _next_delimiter(body: bytes, delimiter: bytes, start: int) -> int:
    """Where the next delimiter line (CRLF--boundary, then "--" or padding and CRLF) starts;
    -1 if none. The boundary followed by anything else is part of the data."""
    pos = body.find(delimiter, start)
    while pos >= 0:
        after = pos + len(delimiter)
        rest = body[after : after + 2]
        if rest == b"--" or body[after:].lstrip(b" \t").startswith(b"\r\n"):
            return pos
        pos = body.find(delimiter, pos + 1)
    return -1


def parse_multipart(body: bytes, boundary: bytes) -> list[Part]:
    """The parts of a whole multipart body (RFC 7578): each part's bytes exactly as sent."""
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    if start < 0:
        raise _bad("multipart body without its boundary")
    parts: list[Part] = []
    pos = start + len(delimiter)
    while not body.startswith(b"--", pos):
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            raise _bad("multipart part without headers")
        end = _next_delimiter(body, b"\r\n" + delimiter, head_end + 4)
        if end < 0:
            raise _bad("multipart body ends inside a part")
        headers = _headers(body[pos:head_end])
        disposition = dict(_DISPOSITION_PARAM.findall(headers.get("content-disposition", "")))
        if "name" not in disposition:
            raise _bad("multipart part without a name")
        parts.append(
            Part(disposition["name"], disposition.get("filename"), body[head_end + 4 : end])
        )
        if len(parts) > MAX_PARTS:
            raise _bad(f"more than {MAX_PARTS} multipart parts")
        pos = end + 2 + len(delimiter)
    return parts


def _top_level_split(text: str) -> list[str]:
    """`text` cut at the commas outside parentheses (types such as Tuple(a, b) hold commas)."""
    pieces: list[str] = []
    depth, start = 0, 0
    for token in tokens(text, hash_comments=False):
        if not isinstance(token, Token):
            raise _bad("unterminated literal in an external table's types")
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        elif token.text == "," and depth == 0:
            pieces.append(text[start : token.start])
            start = token.end
    pieces.append(text[start:])
    return [p.strip() for p in pieces]


def _checked_columns(columns: str, table: str) -> str:
    """A column list that stays a column list: parentheses balanced, never closed beyond
    the list, no statement separator. (The SQL guard still reads the whole statement.)"""
    depth = 0
    for token in tokens(columns, hash_comments=False):
        if token is NEED_MORE:
            raise _bad(f"unterminated literal in the structure of {table}")
        assert isinstance(token, Token)
        if token.text == ";":
            raise _bad(f"the structure of {table} is not a column list")
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        if depth < 0:
            raise _bad(f"the structure of {table} is not a column list")
    if depth != 0 or not columns.strip():
        raise _bad(f"the structure of {table} is not a column list")
    return columns


def split_form(
    url_pairs: Iterable[tuple[str, str]], parts: list[Part]
) -> tuple[list[tuple[str, str]], list[ExternalTable]]:
    """URL pairs plus the form's plain fields (minus the tables' own `<name>_*` keys), and
    the external tables the file parts make."""
    files = [p for p in parts if p.filename is not None]
    names = {p.name for p in files}
    own = {f"{n}_{key}" for n in names for key in ("structure", "types", "format")}
    pairs = list(url_pairs)
    for part in parts:
        if part.filename is None:
            try:
                pairs.append((part.name, part.data.decode("utf-8")))
            except UnicodeDecodeError:
                raise _bad(f"form field {part.name} is not UTF-8") from None
    table_args = {k: v for k, v in pairs if k in own}
    tables: list[ExternalTable] = []
    for part in files:
        if not _TABLE_NAME.match(part.name):
            raise _bad(f"external table name {part.name!r} is not a plain name")
        structure = table_args.get(f"{part.name}_structure")
        types = table_args.get(f"{part.name}_types")
        if structure is not None:
            columns = structure
        elif types is not None:
            columns = ", ".join(
                f"`_{i}` {t}" for i, t in enumerate(_top_level_split(types), start=1)
            )
        else:
            raise _bad(
                f"external table {part.name} needs {part.name}_structure or {part.name}_types"
            )
        fmt = table_args.get(f"{part.name}_format") or DEFAULT_FORMAT
        if not _TABLE_NAME.match(fmt):
            raise _bad(f"external table format {fmt!r} is not a format name")
        tables.append(
            ExternalTable(part.name, _checked_columns(columns, part.name), fmt, part.data)
        )
    return [(k, v) for k, v in pairs if k not in own], tables
