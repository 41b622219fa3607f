"""Bisection of a refused batch down to the rows the store cannot take (fake store)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streams.isolate import DataRefused, insert_isolating


class FakeStore:
    """Refuses any insert holding a bad row (as ClickHouse refuses the whole insert)."""

    def __init__(self, bad: set[int], down_for: int = 0) -> None:
        self.bad = bad
        self.stored: list[int] = []
        self.inserts: list[list[int]] = []
        self.down_for = down_for

    async def insert(self, rows: Sequence[int]) -> None:
        self.inserts.append(list(rows))
        if self.down_for:
            self.down_for -= 1
            raise ConnectionError("store down")
        found = [row for row in rows if row in self.bad]
        if found:
            raise DataRefused(f"cannot hold {found[0]}")
        self.stored.extend(rows)


def run(rows: Sequence[int], store: FakeStore) -> list[tuple[int, int, str]]:
    refused = asyncio.run(insert_isolating(rows, store.insert))
    return [(f.index, f.row, f.reason) for f in refused]


def test_a_good_batch_is_one_insert() -> None:
    store = FakeStore(bad=set())
    assert run(list(range(10)), store) == []
    assert store.inserts == [list(range(10))]
    assert store.stored == list(range(10))


def test_one_bad_row_is_found_and_everything_else_stored_in_order() -> None:
    rows = [100 + i for i in range(500)]
    store = FakeStore(bad={100 + 317})
    assert run(rows, store) == [(317, 417, "cannot hold 417")]
    assert store.stored == [r for r in rows if r != 417]
    # About 2·log2(500) inserts, not one per row.
    assert len(store.inserts) <= 2 * 9 + 1


@pytest.mark.parametrize("bad", [{0}, {9}, {0, 9}, {3, 4, 5}, set(range(10))])
def test_every_bad_row_is_found(bad: set[int]) -> None:
    store = FakeStore(bad=bad)
    refused = run(list(range(10)), store)
    assert [index for index, _, _ in refused] == sorted(bad)
    assert sorted(store.stored) == sorted(set(range(10)) - bad)


def test_an_empty_batch_inserts_nothing() -> None:
    store = FakeStore(bad=set())
    assert run([], store) == []
    assert store.inserts == []


def test_a_store_failure_is_not_taken_for_bad_rows() -> None:
    """Only DataRefused splits: anything else is the caller's to retry, not a bad row."""
    store = FakeStore(bad=set(), down_for=1)
    with pytest.raises(ConnectionError):
        run([1, 2, 3], store)
    assert store.stored == []
