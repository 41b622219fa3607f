"""Just enough SQL lexing to serve ClickHouse's HTTP interface: where an INSERT's data starts,
and which output format a query asks for. The engine parses the SQL itself; this never
rewrites a statement, it only finds boundaries (strings, quoted names and comments skipped)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")  # `$` inside a name, as ClickHouse reads it
# ClickHouse's quotes, the typographic ones included (its lexer takes them, for pasted SQL)
_CLOSING = {"'": "'", '"': '"', "`": "`", "\u2018": "\u2019", "\u201c": "\u201d"}
_HEREDOC = re.compile(r"\$([A-Za-z0-9_]*)\$")


class Incomplete(Enum):
    """The text ends inside a token: more bytes are needed to decide."""

    MORE = "more"


NEED_MORE = Incomplete.MORE


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word", "quoted", "punct"
    text: str
    start: int
    end: int


def _skip_quoted(text: str, pos: int) -> int | None:
    """End (exclusive) of the quoted token opening at `pos`; None if it is not closed."""
    quote = _CLOSING[text[pos]]
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == quote:
            return i + 1
        i += 1
    return None


def tokens(text: str, hash_comments: bool = True) -> Iterator[Token | Incomplete]:
    """Words, quoted literals (heredocs `$tag$...$tag$` too) and single punctuation characters;
    whitespace and comments skipped. Yields NEED_MORE (and stops) when the text ends inside a
    comment or literal. hash_comments False: `#` is punctuation, so a reader that must not
    miss code errs towards reading a comment as code (ClickHouse takes `# ` but not `#x`)."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        heredoc = _HEREDOC.match(text, i) if char == "$" else None
        if char.isspace():
            i += 1
        elif heredoc is not None:
            close = text.find(heredoc.group(), heredoc.end())
            if close < 0:
                yield NEED_MORE
                return
            after = close + len(heredoc.group())
            yield Token("quoted", text[i:after], i, after)
            i = after
        elif text.startswith("--", i) or (char == "#" and hash_comments):
            newline = text.find("\n", i)
            if newline < 0:
                yield NEED_MORE
                return
            i = newline + 1
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            if close < 0:
                yield NEED_MORE
                return
            i = close + 2
        elif char in _CLOSING:
            end = _skip_quoted(text, i)
            if end is None:
                yield NEED_MORE
                return
            yield Token("quoted", text[i:end], i, end)
            i = end
        elif char.isascii() and (char.isalpha() or char == "_"):
            match = _WORD.match(text, i)
            assert match is not None  # the first character is a word character
            yield Token("word", match.group(), i, match.end())
            i = match.end()
        else:
            yield Token("punct", char, i, i + 1)
            i += 1


@dataclass(frozen=True, slots=True)
class InsertHead:
    """An INSERT that carries its data: `statement` without the FORMAT/VALUES clause
    (what a streaming insert takes), the input format, and where the data starts."""

    statement: str
    fmt: str
    data_offset: int


# At the top level of an INSERT, these mean the rows come from elsewhere, not the request.
_NO_INLINE_DATA = {"SELECT", "WITH", "FROM"}


def split_insert(head: bytes, final: bool) -> InsertHead | Incomplete | None:
    """Find where the data of an `INSERT ... FORMAT X` / `INSERT ... VALUES` begins in `head`.

    None: not an INSERT with inline data (run the text as a query). NEED_MORE: `head` ends
    before the answer is known and `final` is false. Offsets are byte offsets into `head`.
    As ClickHouse does, the data starts after the format name, spaces and one line break.
    """
    text = head.decode("latin-1")  # one char per byte: offsets stay byte offsets
    depth = 0
    first = True
    stream = tokens(text)
    for token in stream:
        if token is NEED_MORE:
            return None if final else NEED_MORE
        assert isinstance(token, Token)
        if token.kind == "word" and token.end == len(text) and not final:
            return NEED_MORE  # a word at the end may go on in the next chunk
        if first:
            if token.kind != "word" or token.text.upper() != "INSERT":
                return None
            first = False
            continue
        if token.kind == "punct":
            depth += {"(": 1, ")": -1}.get(token.text, 0)
            continue
        if token.kind != "word" or depth != 0:
            continue
        keyword = token.text.upper()
        if keyword in _NO_INLINE_DATA:
            return None
        if keyword == "VALUES":
            return InsertHead(_statement(head, token.start), "Values", token.end)
        if keyword == "FORMAT":
            name = next(stream, None)
            if name is None or name is NEED_MORE:
                return None if final else NEED_MORE
            assert isinstance(name, Token)
            if name.kind != "word":
                return None
            if name.end == len(text) and not final:
                return NEED_MORE
            offset = _data_start(text, name.end)
            if offset is None:
                if not final:
                    return NEED_MORE
                offset = len(text)
            return InsertHead(_statement(head, token.start), name.text, offset)
    return None if final else NEED_MORE


def _statement(head: bytes, end: int) -> str:
    return head[:end].decode("utf-8").strip()


def _data_start(text: str, pos: int) -> int | None:
    """After the format name: skip spaces and tabs, then at most one line break."""
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if pos == len(text):
        return None
    if text.startswith("\r\n", pos):
        return pos + 2
    if text[pos] == "\r" and pos + 1 == len(text):
        return None
    if text[pos] == "\n":
        return pos + 1
    return pos


def output_format(query: str, default: str) -> str:
    """The format a query's result comes in: its own top-level FORMAT clause, else `default`."""
    depth = 0
    found = default
    stream = tokens(query)
    for token in stream:
        if not isinstance(token, Token):
            break
        if token.kind == "punct":
            depth += {"(": 1, ")": -1}.get(token.text, 0)
        elif token.kind == "word" and depth == 0 and token.text.upper() == "FORMAT":
            name = next(stream, None)
            if isinstance(name, Token) and name.kind == "word":
                found = name.text
    return found


def first_keyword(query: str) -> str:
    """The statement's first word, upper-cased ("" if none): SELECT, INSERT, CREATE..."""
    for token in tokens(query):
        if isinstance(token, Token) and token.kind == "word":
            return token.text.upper()
        return ""
    return ""
