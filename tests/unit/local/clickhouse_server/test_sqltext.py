"""The store's SQL boundaries: where an INSERT's data starts, the output format."""

from __future__ import annotations

import pytest

from llmops.local.clickhouse_server.sqltext import (
    NEED_MORE,
    InsertHead,
    first_keyword,
    output_format,
    split_insert,
)

NATIVE = bytes(range(256))  # binary data that must come through untouched


def test_format_clause_data_starts_after_one_newline() -> None:
    head = b"INSERT INTO t (a, b) FORMAT Native\n" + NATIVE
    split = split_insert(head, final=False)
    assert split == InsertHead("INSERT INTO t (a, b)", "Native", len(head) - len(NATIVE))
    assert isinstance(split, InsertHead)
    assert head[split.data_offset :] == NATIVE


def test_crlf_and_spaces_after_the_format_name() -> None:
    head = b"insert into t format TSV  \r\n1\tx\n"
    split = split_insert(head, final=True)
    assert isinstance(split, InsertHead)
    assert (split.statement, split.fmt, head[split.data_offset :]) == (
        "insert into t",
        "TSV",
        b"1\tx\n",
    )


def test_data_on_the_same_line_as_the_format() -> None:
    head = b'INSERT INTO t FORMAT JSONEachRow {"a": 1}'
    split = split_insert(head, final=True)
    assert isinstance(split, InsertHead)
    assert head[split.data_offset :] == b'{"a": 1}'


def test_only_one_newline_is_skipped() -> None:
    head = b"INSERT INTO t FORMAT TSV\n\n1\n"
    split = split_insert(head, final=True)
    assert isinstance(split, InsertHead)
    assert head[split.data_offset :] == b"\n1\n"


def test_settings_before_format_stay_in_the_statement() -> None:
    head = b"INSERT INTO db.t SETTINGS async_insert=0 FORMAT RowBinary\nxyz"
    split = split_insert(head, final=False)
    assert isinstance(split, InsertHead)
    assert split.statement == "INSERT INTO db.t SETTINGS async_insert=0"
    assert split.fmt == "RowBinary"


def test_values_data_starts_after_the_keyword() -> None:
    head = b"INSERT INTO t (a) VALUES (1), (2)"
    split = split_insert(head, final=False)
    assert isinstance(split, InsertHead)
    assert (split.statement, split.fmt, head[split.data_offset :]) == (
        "INSERT INTO t (a)",
        "Values",
        b" (1), (2)",
    )


@pytest.mark.parametrize(
    "head",
    [
        b"INSERT INTO t SELECT * FROM s FORMAT TSV",
        b"INSERT INTO t WITH 1 AS x SELECT x",
        b"INSERT INTO t FROM INFILE 'f.csv' FORMAT CSV",
        b"SELECT 1 FORMAT TSV\n",
        b"  CREATE TABLE t (a UInt8) ENGINE = Memory",
        b"(SELECT 1)",
    ],
)
def test_statements_without_inline_data(head: bytes) -> None:
    assert split_insert(head, final=False) is None
    assert split_insert(head, final=True) is None


def test_keywords_inside_literals_comments_and_parentheses_are_not_clauses() -> None:
    head = (
        b"-- FORMAT CSV\nINSERT /* VALUES */ INTO FUNCTION file('x FORMAT y', `FORMAT`)"
        b' ("VALUES") FORMAT CSV\n1\n'
    )
    split = split_insert(head, final=True)
    assert isinstance(split, InsertHead)
    assert split.fmt == "CSV"
    assert head[split.data_offset :] == b"1\n"


def test_escaped_quote_inside_a_literal() -> None:
    head = b"INSERT INTO FUNCTION file('it\\'s FORMAT x') FORMAT TSV\n1\n"
    split = split_insert(head, final=True)
    assert isinstance(split, InsertHead)
    assert split.fmt == "TSV"


@pytest.mark.parametrize(
    "partial",
    [
        b"",
        b"INS",
        b"INSERT INTO t",
        b"INSERT INTO t FORMAT",
        b"INSERT INTO t FORMAT Nat",  # the name may continue
        b"INSERT INTO t FORMAT Native",  # a newline may follow
        b"INSERT INTO t FORMAT Native  ",
        b"INSERT INTO t FORMAT Native\r",
        b"INSERT INTO t /* open comment",
        b"INSERT INTO FUNCTION file('open literal",
    ],
)
def test_partial_heads_ask_for_more(partial: bytes) -> None:
    assert split_insert(partial, final=False) is NEED_MORE


def test_a_complete_head_at_end_of_body_has_empty_data() -> None:
    split = split_insert(b"INSERT INTO t FORMAT Native", final=True)
    assert split == InsertHead("INSERT INTO t", "Native", len(b"INSERT INTO t FORMAT Native"))
    assert split_insert(b"INSERT INTO t", final=True) is None


def test_chunk_boundaries_do_not_change_the_answer() -> None:
    body = b"INSERT INTO t (a) FORMAT TabSeparated\n1\n2\n"
    expected = split_insert(body, final=True)
    for cut in range(len(body) + 1):
        split = split_insert(body[:cut], final=False)
        if split is NEED_MORE:
            continue
        assert split == expected, cut


def test_utf8_statement_offsets_are_bytes() -> None:
    head = "INSERT INTO `tâble` FORMAT TSV\n".encode() + b"\xff"
    split = split_insert(head, final=True)
    assert isinstance(split, InsertHead)
    assert split.statement == "INSERT INTO `tâble`"
    assert head[split.data_offset :] == b"\xff"


@pytest.mark.parametrize(
    ("query", "fmt"),
    [
        ("SELECT 1", "TabSeparated"),
        ("SELECT 1 FORMAT JSON", "JSON"),
        ("SELECT 1\n FORMAT Native;", "Native"),
        ("SELECT 'FORMAT CSV' AS x", "TabSeparated"),
        ("SELECT * FROM (SELECT 1 FORMAT CSV)", "TabSeparated"),
        ("SELECT 1 -- FORMAT CSV\n", "TabSeparated"),
        ("SELECT 1 FORMAT JSONEachRow SETTINGS max_threads = 1", "JSONEachRow"),
    ],
)
def test_output_format(query: str, fmt: str) -> None:
    assert output_format(query, "TabSeparated") == fmt


@pytest.mark.parametrize(
    ("query", "word"),
    [("select 1", "SELECT"), ("  -- c\nUSE db", "USE"), ("(SELECT 1)", ""), ("", "")],
)
def test_first_keyword(query: str, word: str) -> None:
    assert first_keyword(query) == word


def test_a_keyword_cut_by_a_chunk_boundary_is_not_taken_for_a_clause() -> None:
    body = b"INSERT INTO selections FORMAT TSV\n1\n"
    assert split_insert(b"INSERT INTO select", final=False) is NEED_MORE
    split = split_insert(body, final=False)
    assert isinstance(split, InsertHead)
    assert split.statement == "INSERT INTO selections"
