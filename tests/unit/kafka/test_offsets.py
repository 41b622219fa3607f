from llmops.kafka.offsets import OffsetTracker


def test_nothing_consumed_nothing_to_commit() -> None:
    assert OffsetTracker().committable() == {}


def test_in_order_completion_commits_past_the_last() -> None:
    t = OffsetTracker()
    for o in range(3):
        t.start("a", 0, o)
        t.finish("a", 0, o)
    assert t.committable() == {("a", 0): 3}


def test_out_of_order_completion_holds_back_at_the_slowest() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.start("a", 0, o)
    t.finish("a", 0, 11)
    t.finish("a", 0, 12)
    assert t.committable() == {("a", 0): 10}
    t.finish("a", 0, 10)
    assert t.committable() == {("a", 0): 13}


def test_gaps_in_offsets_do_not_block() -> None:
    t = OffsetTracker()
    t.start("a", 0, 5)
    t.start("a", 0, 9)  # 6..8 were never delivered (compaction, control records)
    t.finish("a", 0, 5)
    assert t.committable() == {("a", 0): 9}


def test_mark_committed_suppresses_repeat_commits() -> None:
    t = OffsetTracker()
    t.start("a", 1, 0)
    t.finish("a", 1, 0)
    offsets = t.committable()
    t.mark_committed(offsets)
    assert t.committable() == {}
    t.start("a", 1, 1)
    assert t.committable() == {}  # 1 still in flight: position stays at 1
    t.finish("a", 1, 1)
    assert t.committable() == {("a", 1): 2}


def test_partitions_are_independent_and_forgettable() -> None:
    t = OffsetTracker()
    t.start("a", 0, 0)
    t.start("a", 1, 0)
    t.finish("a", 1, 0)
    assert t.committable() == {("a", 1): 1}
    assert t.in_flight() == 1
    t.forget("a", 0)
    t.finish("a", 0, 0)  # late completion of a revoked partition is ignored
    assert t.in_flight() == 0
    assert ("a", 0) not in t.committable()


def test_seek_back_restarts_tracking_from_there() -> None:
    t = OffsetTracker()
    for o in range(5):
        t.start("a", 0, o)
    t.start("a", 0, 2)  # consumed again after a seek
    assert t.in_flight() == 3  # 0, 1 and the new 2
    for o in (0, 1, 2):
        t.finish("a", 0, o)
    assert t.committable() == {("a", 0): 3}
