"""Which offsets are safe to commit when records finish out of order.

A consumer may work on many records of a partition at once (continuous batching). Kafka
stores one committed offset per partition: everything below it counts as done. Records of a
partition are consumed in increasing offset order, so the safe position is the lowest offset
still in flight, or one past the highest consumed when none is. A slow record holds back the
ones after it, and a crash replays them (at-least-once; outputs carry ids, replays are absorbed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TopicPartitionKey = tuple[str, int]


@dataclass
class _PartitionState:
    highest: int = -1
    pending: set[int] = field(default_factory=set)
    committed: int | None = None

    def position(self) -> int:
        return min(self.pending) if self.pending else self.highest + 1


class OffsetTracker:
    """Tracks in-flight offsets per partition; pure, no IO."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartitionKey, _PartitionState] = {}

    def start(self, topic: str, partition: int, offset: int) -> None:
        state = self._parts.setdefault((topic, partition), _PartitionState())
        if offset <= state.highest:
            # A seek back (or a replayed fetch): start over from there.
            state.pending = {o for o in state.pending if o < offset}
        state.highest = offset
        state.pending.add(offset)

    def finish(self, topic: str, partition: int, offset: int) -> None:
        """Mark a record done. Unknown partitions (revoked meanwhile) are ignored."""
        state = self._parts.get((topic, partition))
        if state is not None:
            state.pending.discard(offset)

    def committable(self) -> dict[TopicPartitionKey, int]:
        """Per partition, the next offset to read after a restart, where it moved."""
        out: dict[TopicPartitionKey, int] = {}
        for key, state in self._parts.items():
            position = state.position()
            if position > 0 and position != state.committed:
                out[key] = position
        return out

    def mark_committed(self, offsets: dict[TopicPartitionKey, int]) -> None:
        for key, offset in offsets.items():
            state = self._parts.get(key)
            if state is not None:
                state.committed = offset

    def in_flight(self) -> int:
        return sum(len(s.pending) for s in self._parts.values())

    def forget(self, topic: str, partition: int) -> None:
        """Drop a revoked partition: its pending records belong to its next owner now."""
        self._parts.pop((topic, partition), None)
