"""Find the rows a store cannot take by splitting the batch that failed. No IO of its own.

A batch refused for its data holds at least one bad row, usually one among hundreds. The
batch is halved and each half tried again, down to single rows: a row refused alone is
unstorable; every other row is stored, in as few inserts as the split allows (about
2·log2(n) extra inserts for one bad row among n). Rows that fail only together are both
stored once apart (that is not a bad row, it was the mix).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class DataRefused(Exception):
    """The store refused a batch for its values (not because it is down)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Unstorable(Generic[T]):
    index: int  # the row's position in the batch given to `insert_isolating`
    row: T
    reason: str


async def insert_isolating(
    rows: Sequence[T], insert: Callable[[Sequence[T]], Awaitable[None]]
) -> list[Unstorable[T]]:
    """Insert `rows` through `insert`, splitting on DataRefused; returns the rows refused
    alone, in batch order. Any other exception from `insert` propagates (it retries a store
    that is down itself)."""
    refused: list[Unstorable[T]] = []
    # (start, end) slices still to insert; a stack, so the batch's order is kept.
    pending: list[tuple[int, int]] = [(0, len(rows))] if rows else []
    while pending:
        start, end = pending.pop()
        try:
            await insert(rows[start:end])
        except DataRefused as error:
            if end - start == 1:
                refused.append(Unstorable(start, rows[start], error.reason))
                continue
            middle = (start + end) // 2
            pending.append((middle, end))
            pending.append((start, middle))
    return refused
