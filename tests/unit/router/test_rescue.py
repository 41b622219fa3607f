"""The rescuer's decision for one stranded request (the Kafka side is in the failover test)."""

from datetime import UTC, datetime, timedelta
from typing import cast

from llmops.config import PoolConfig, Settings, TransformersPool
from llmops.kafka.producer import Producer
from llmops.prompts.registry import PromptSet, prompt_set_from_data
from llmops.routing_config import RoutingConfig
from schemas import PoolStatus, PromptRequest, RoutedRequest
from services.router.board import PoolBoard
from services.router.rescue import Rescuer

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(seconds=10)
CHEAP = TransformersPool(name="cheap", model="m", cost_per_1k_tokens=0.1)
MID = TransformersPool(name="mid", model="m", cost_per_1k_tokens=0.5)
OTHER = TransformersPool(name="other", model="big", cost_per_1k_tokens=0.01)
POOLS: list[PoolConfig] = [CHEAP, MID, OTHER]
PROMPTS = prompt_set_from_data(
    {
        "prompts": [
            {
                "name": "p",
                "versions": [
                    {"version": 1, "model": "big", "messages": [{"role": "user", "content": "x"}]}
                ],
            }
        ]
    }
)


def _board(alive: list[PoolConfig]) -> PoolBoard:
    board = PoolBoard(POOLS, RoutingConfig(), T0)
    board.mark_live(T0)
    for pool in POOLS:  # every pool beat once; only `alive` keep beating
        board.observe(_beat(pool, T0), T0)
    for pool in alive:
        board.observe(_beat(pool, NOW), NOW)
    return board


def _beat(pool: PoolConfig, ts: datetime) -> PoolStatus:
    return PoolStatus(
        pool=pool.name,
        instance="i",
        ts=ts,
        models=[pool.model],
        capacity=8,
        in_flight=0,
        cost_per_1k_tokens=pool.cost_per_1k_tokens,
    )


def _rescuer(board: PoolBoard, prompts: PromptSet = PROMPTS) -> Rescuer:
    settings = Settings(pools=POOLS)
    # decide() never touches the producer: the Kafka side is tested on the real broker.
    return Rescuer("cheap", settings, prompts, board, cast(Producer, None), clock=lambda: NOW)


def _stranded(**update: object) -> RoutedRequest:
    request = PromptRequest(
        messages=[{"role": "user", "content": "hi"}],
        model="m",
        user_id="u1",
        reply_to="llm.replies.app",
        deadline=NOW + timedelta(seconds=30),
    )
    routed = RoutedRequest(
        request=request,
        messages=request.messages or [],
        pool="cheap",
        model="m",
        route_reason="cheapest_healthy: cheap",
        routed_at=T0,
    )
    return routed.model_copy(update=update)


def test_a_stranded_request_moves_to_a_live_pool_keeping_its_id() -> None:
    board = _board(alive=[MID, OTHER])
    stranded = _stranded()
    rescued = _rescuer(board).decide(stranded)
    assert isinstance(rescued, RoutedRequest)
    assert rescued.pool == "mid" and rescued.model == "m"
    assert rescued.request_id == stranded.request_id and rescued.request == stranded.request
    assert rescued.rerouted_from == "cheap" and rescued.routed_at == NOW
    assert rescued.route_reason.startswith("rescued: from cheap dead (no heartbeat for 10.0s)")
    assert "-> cheapest_healthy: mid" in rescued.route_reason


def test_it_never_goes_back_to_the_dead_pool() -> None:
    # Only a pool for another model is alive: the dead one is excluded, so no pool is left.
    board = _board(alive=[OTHER])
    kind, message = _rescuer(board).decide(_stranded())  # type: ignore[misc]
    assert kind == "no_healthy_pool"
    assert message.startswith("cheap dead (no heartbeat for 10.0s); no other pool can take it")


def test_the_prompt_versions_model_decides_where_it_may_go() -> None:
    board = _board(alive=[MID, OTHER])
    stranded = _stranded(prompt_name="p", prompt_version=1)
    stranded = stranded.model_copy(
        update={"request": stranded.request.model_copy(update={"model": None})}
    )
    rescued = _rescuer(board).decide(stranded)
    assert isinstance(rescued, RoutedRequest) and rescued.pool == "other"


def test_a_request_is_rescued_once_only() -> None:
    board = _board(alive=[MID])
    kind, message = _rescuer(board).decide(_stranded(rerouted_from="pricey"))  # type: ignore[misc]
    assert kind == "no_healthy_pool"
    assert message.startswith("stranded twice: rescued from pricey, then cheap dead")


def test_an_expired_request_is_answered_not_moved() -> None:
    board = _board(alive=[MID])
    stranded = _stranded()
    expired = stranded.model_copy(
        update={"request": stranded.request.model_copy(update={"deadline": NOW})}
    )
    kind, message = _rescuer(board).decide(expired)  # type: ignore[misc]
    assert kind == "deadline_exceeded" and "while stranded" in message
