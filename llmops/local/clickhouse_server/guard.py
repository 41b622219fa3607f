"""No file system or network reach from SQL. chDB runs every table function and engine it
has, with any absolute path, and cannot revoke grants, so the HTTP front refuses, before the
engine sees it, any statement that could reach outside the data directory:

- a call of a table function, table engine or database engine not on the allow-lists below
  (the deny-list is what the engine itself reports minus these, so new ones are refused too);
  the scalar `file()` and dynamic `disk()` with them;
- `ENGINE [=] Name` of such an engine (Kafka and friends take no parentheses);
- SYSTEM, ATTACH, DETACH, BACKUP, RESTORE statements; CREATE DICTIONARY / NAMED COLLECTION;
- INTO OUTFILE, FROM INFILE; settings naming schema or template files; other SQL dialects.

It reads the text as ClickHouse's lexer does (strings, quoted names, heredocs, comments) and
errs towards refusing: `#` comments and nested comments are read as code.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from llmops.local.clickhouse_server.protocol import ProtocolError
from llmops.local.clickhouse_server.sqltext import NEED_MORE, Token, tokens

ACCESS_DENIED = 497
# What the rules look back on: CREATE OR REPLACE TEMPORARY ... DICTIONARY is the longest
RECENT_TOKENS = 8
# Longer SQL is read in a worker thread (about 0.5 s per MB), not on the event loop
INLINE_CHECK_CHARS = 64 << 10
SYNTAX_ERROR = 62

SAFE_TABLE_FUNCTIONS = frozenset(
    {
        "dictionary",
        "format",
        "generaterandom",
        "generateseries",
        "generate_series",
        "input",
        "loop",
        "merge",
        "mergetreeanalyzeindexes",
        "mergetreeanalyzeindexesuuid",
        "mergetreecodecblockcounts",
        "mergetreeindex",
        "mergetreeprojection",
        "mergetreetextindex",
        "null",
        "numbers",
        "numbers_mt",
        "primes",
        "sqlstandardvalues",
        "values",
        "view",
        "viewexplain",
        "viewifpermitted",
        "zeros",
        "zeros_mt",
    }
)
SAFE_ENGINES = frozenset(
    {
        # tables: kept in the data directory, or in memory
        "mergetree",
        "replacingmergetree",
        "summingmergetree",
        "aggregatingmergetree",
        "collapsingmergetree",
        "versionedcollapsingmergetree",
        "coalescingmergetree",
        "graphitemergetree",
        "memory",
        "log",
        "tinylog",
        "stripelog",
        "null",
        "buffer",
        "merge",
        "view",
        "materializedview",
        "set",
        "join",
        "dictionary",
        "generaterandom",
        "loop",
        "alias",
        # databases
        "atomic",
        "ordinary",
    }
)
# Not table functions or engines, but reach files all the same.
ALWAYS_DENIED_CALLS = frozenset({"file", "disk"})
DENIED_STATEMENTS = frozenset({"SYSTEM", "ATTACH", "DETACH", "BACKUP", "RESTORE"})
# readonly=1 still lets a user kill its own queries; in chDB every query is the same user's
ANALYST_DENIED_STATEMENTS = DENIED_STATEMENTS | {"KILL"}
_CREATE_PREFIX = frozenset({"OR", "REPLACE", "IF", "NOT", "EXISTS", "TEMPORARY"})
_DENIED_CREATES = frozenset({"DICTIONARY", "NAMED"})
_IDENTIFIER_PARAM = re.compile(r"\{\s*([A-Za-z0-9_]+)\s*:\s*Identifier\s*\}", re.IGNORECASE)
_FILE_SETTING_PREFIXES = ("format_schema", "output_format_schema", "format_template")
_LOCKED_SETTINGS = frozenset(
    {
        "input_format_values_interpret_expressions",
        "input_format_values_deduce_templates_of_expressions",
    }
)


def denied_setting(name: str) -> bool:
    """Settings that name files the engine would read or write, switch the SQL dialect
    (another parser: this guard reads ClickHouse SQL only), or let Values rows be expressions
    (insert data, which this guard does not read, could then call file())."""
    lower = name.lower()
    return (
        lower in _LOCKED_SETTINGS or lower == "dialect" or lower.startswith(_FILE_SETTING_PREFIXES)
    )


def _denied(reason: str) -> ProtocolError:
    return ProtocolError(ACCESS_DENIED, f"Not enough privileges: {reason} is not allowed here")


def _name(token: Token) -> str:
    """A word, or a quoted name unquoted (`file`, "file" and typographic quotes alike)."""
    if token.kind == "quoted" and token.text[0] not in "'$\u2018":
        return token.text[1:-1]
    return token.text if token.kind == "word" else ""


@dataclass(frozen=True)
class SqlGuard:
    denied_calls: frozenset[str]  # lower-case names refused before "(" or after ENGINE

    @classmethod
    def from_catalog(cls, names: Iterable[str]) -> SqlGuard:
        """From the engine's own list of table functions, table and database engines."""
        lower = {n.lower() for n in names}
        safe = SAFE_TABLE_FUNCTIONS | SAFE_ENGINES
        return cls(frozenset((lower - safe) | ALWAYS_DENIED_CALLS))

    def check(
        self, sql: str, params: Mapping[str, str] | None = None, analyst: bool = False
    ) -> None:
        """Raise ACCESS_DENIED if `sql` (or an identifier parameter) could reach outside."""
        statements = ANALYST_DENIED_STATEMENTS if analyst else DENIED_STATEMENTS
        for name in _IDENTIFIER_PARAM.findall(sql):
            value = (params or {}).get(name, "")
            if value.strip('`" ').lower() in self.denied_calls:
                raise _denied(f"query parameter naming {value!r}")
        seen: deque[Token] = deque(maxlen=RECENT_TOKENS)
        for token in tokens(sql, hash_comments=False):
            if token is NEED_MORE:
                raise ProtocolError(SYNTAX_ERROR, "Unterminated literal or comment")
            assert isinstance(token, Token)
            self._check_token(token, seen, statements)
            seen.append(token)

    def _check_token(self, token: Token, seen: deque[Token], statements: frozenset[str]) -> None:
        previous = seen[-1] if seen else None
        upper = token.text.upper() if token.kind == "word" else ""
        starts = previous is None or (previous.kind == "punct" and previous.text == ";")
        if starts and upper in statements:
            raise _denied(f"{upper} statement")
        if token.kind == "punct" and token.text == "(" and previous is not None:
            called = _name(previous).lower()
            if called in self.denied_calls:
                raise _denied(f"{_name(previous)}()")
            if previous.kind == "punct" and previous.text == "}":
                raise _denied("a query parameter as a function name")
        engine = _name(token).lower() if self._after_engine(seen) else ""
        if engine in self.denied_calls:
            raise _denied(f"ENGINE {_name(token)}")
        if upper in _DENIED_CREATES and self._after_create(seen):
            raise _denied(f"CREATE {upper}")
        if previous is not None and previous.kind == "word":
            pair = (previous.text.upper(), upper)
            if pair in (("INTO", "OUTFILE"), ("FROM", "INFILE")):
                raise _denied(" ".join(pair))
        if token.kind == "word" and denied_setting(token.text):
            raise _denied(f"setting {token.text}")

    @staticmethod
    def _after_engine(seen: deque[Token]) -> bool:
        back = 2 if seen and seen[-1].text == "=" else 1
        if len(seen) < back:
            return False
        word = seen[-back]
        return word.kind == "word" and word.text.upper() == "ENGINE"

    @staticmethod
    def _after_create(seen: deque[Token]) -> bool:
        for token in reversed(seen):
            word = token.text.upper() if token.kind == "word" else ""
            if word in ("CREATE", "REPLACE", "ATTACH"):
                return True
            if word not in _CREATE_PREFIX:
                return False
        return False
