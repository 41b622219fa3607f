from datetime import timedelta

from llmops.local.readiness import PoolBoard
from schemas import PoolPhase, PoolStatus, utc_now

START = utc_now()


def _beat(pool: str, phase: PoolPhase, healthy: bool = True, age_s: float = -1) -> PoolStatus:
    ts = START - timedelta(seconds=age_s)
    return PoolStatus(pool=pool, phase=phase, healthy=healthy, capacity=4, in_flight=0, ts=ts)


def test_ready_only_when_every_pool_serves() -> None:
    board = PoolBoard(["cpu", "gpu"], START)
    assert not board.ready()
    assert board.describe() == "cpu no heartbeat yet, gpu no heartbeat yet"
    board.see(_beat("cpu", "starting"))
    board.see(_beat("gpu", "serving"))
    assert not board.ready()
    assert board.describe() == "cpu starting, gpu serving"
    board.see(_beat("cpu", "serving"))
    assert board.ready()


def test_an_unhealthy_pool_is_not_ready() -> None:
    board = PoolBoard(["cpu"], START)
    board.see(_beat("cpu", "serving", healthy=False))
    assert not board.ready() and board.state("cpu") == "unhealthy"


def test_beats_from_before_the_start_and_other_pools_do_not_count() -> None:
    board = PoolBoard(["cpu"], START)
    board.see(_beat("cpu", "serving", age_s=30))  # an earlier run's word
    board.see(_beat("other", "serving"))
    assert not board.ready() and board.describe() == "cpu no heartbeat yet"
