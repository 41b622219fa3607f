"""Rescue requests stranded in a dead pool's topic: re-route them to a live pool.

Design. A pool's queued requests are records of `llm.inference.<pool>` that its consumer
group has not committed: the ones it never took, and the ones it was working on when it
died. When the router's board declares a configured pool dead (no heartbeat from any of its
instances for `dead_after_s`, and the status history fully read, so no old beat fools it),
the router starts a rescuer: a consumer loop that JOINS THAT POOL'S OWN CONSUMER GROUP.

- Ownership comes from Kafka's group protocol, not from a guess: a partition belongs to one
  member of the group at a time, and the rescuer reads from the group's committed offsets.
  So it takes exactly the records the pool left, and commits each one only after its
  re-routed copy is acknowledged: the pool, once back, resumes after what was rescued.
- It never steals from a live pool: it joins only while the pool is dead, and the router stops
  it (drain, commit, leave the group) as soon as any instance of the pool beats again. A
  member that is alive but silent (its beats stopped, its consumer not) is the one overlap:
  the group then splits the partitions between it and the rescuer, still one owner each.
- Each request is re-routed at most once: the copy carries `rerouted_from`; a request found
  stranded a second time is answered with a `no_healthy_pool` error instead of moving again.
- No request waits forever: one past its deadline is answered `deadline_exceeded`; one that no
  other pool can take is answered `no_healthy_pool`.
- Answered once: the copy keeps the request id, so the SDK matches it to the app's waiting
  call. A request the dead pool had answered but not yet committed (the at-least-once window of
  one commit interval) is served again by the new pool; the SDK drops the second reply, and
  the store dedupes llm.responses by request id.

On Kafka (and Tansu) a killed member keeps its partitions until its session times out, so
the rescuer receives them a session timeout (plus a join) after it asks: about 10 s here.
New requests never wait for that: the board routes them elsewhere the moment the pool is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from opentelemetry import trace

from llmops.config import Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import DRAIN_TIMEOUT_S, ConsumerConfig, ConsumerLoop
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from llmops.kafka.replies import error_result, publish_result, rejection_replier
from llmops.prompts.registry import PromptError, PromptSet
from llmops.telemetry import metrics
from llmops.telemetry.conventions import llmops_attributes, messaging_span_name
from llmops.telemetry.spans import consumer_span
from schemas import PromptRef, RoutedRequest, utc_now
from schemas.base import MAX_ROUTE_REASON
from schemas.topics import inference_group, inference_topic
from services.router.board import PoolBoard
from services.router.choice import Decision, RoutingError
from services.router.waiting import PoolWait

log = logging.getLogger(__name__)
tracer = trace.get_tracer("llmops.router")
RECONCILE_S = 0.5
STOP_MARGIN_S = 5.0


class Rescuer:
    """Handles one dead pool's records: re-route each to a live pool, or answer it."""

    def __init__(
        self,
        pool: str,
        settings: Settings,
        prompts: PromptSet,
        board: PoolBoard,
        producer: Producer,
        clock: Callable[[], datetime] = utc_now,
        waiting: PoolWait | None = None,
    ) -> None:
        self.pool = pool
        self._settings = settings
        self._prompts = prompts
        self._board = board
        self._producer = producer
        self._clock = clock
        self._waiting = waiting  # None: a request no other pool can take is answered at once
        self.rerouted = 0
        self.answered = 0

    def _model(self, routed: RoutedRequest) -> str | None:
        """The model the request asked for, directly or through its prompt version."""
        if routed.request.model:
            return routed.request.model
        if routed.prompt_name and routed.prompt_version:
            ref = PromptRef(name=routed.prompt_name)
            with contextlib.suppress(PromptError):
                return self._prompts.resolve(ref, routed.prompt_version).model
        return None

    async def handle(self, record: Record) -> Any:
        routed = record.decode(RoutedRequest, self._settings.max_message_bytes)
        with consumer_span(
            tracer,
            messaging_span_name("rescue", record.topic),
            record.headers,
            record.topic,
            record.partition,
            record.offset,
            attributes=llmops_attributes(request_id=routed.request_id, rescued_from=self.pool),
        ) as span:
            rescued_or_reply = self.decide(routed)
            if isinstance(rescued_or_reply, RoutedRequest):
                span.set_attributes(llmops_attributes(pool=rescued_or_reply.pool))
                return await self._send_rescued(rescued_or_reply)
            kind, message = rescued_or_reply
            wait_s = self._wait_s(routed)
            if kind == "no_healthy_pool" and wait_s > 0:
                span.set_attributes(llmops_attributes(parked_s=wait_s))
                return asyncio.ensure_future(self._park(routed, message, wait_s))
            span.set_attributes(llmops_attributes(error=kind))
            return await self._answer(routed, kind, message)

    async def _answer(self, routed: RoutedRequest, kind: Any, message: str) -> Any:
        self.answered += 1
        metrics.count_unrouted(kind)
        request = routed.request
        result = error_result(
            request.request_id,
            kind,
            message,
            request=request,
            finish_reason="timeout" if kind == "deadline_exceeded" else "error",
            pool=self.pool,
            route_reason=f"rescue: {message}"[:MAX_ROUTE_REASON],
        )
        return asyncio.gather(*await publish_result(self._producer, result, request.reply_to))

    def _wait_s(self, routed: RoutedRequest) -> float:
        """How long a request no other pool can take may wait for one (0: answer it now)."""
        if self._waiting is None or routed.rerouted_from is not None:
            return 0.0
        if not self._waiting.can_park():
            return 0.0
        return self._waiting.wait_s(self._clock(), routed.request.deadline)

    def _retry(self, routed: RoutedRequest) -> RoutedRequest | None:
        """A copy for a live pool: another one, or this one again once it beats."""
        now = self._clock()
        exclude = {self.pool} if self.pool in self._board.dead(now) else set()
        request = routed.request
        try:
            decision = self._board.route(
                self._model(routed), request.adapter, request.sticky_key, now, exclude=exclude
            )
        except RoutingError:
            return None
        return self._copy(routed, decision, f"{self.pool} after waiting", now)

    async def _park(self, routed: RoutedRequest, message: str, wait_s: float) -> None:
        # The only pool restarting: wait for it (or another) instead of failing the request.
        assert self._waiting is not None
        with tracer.start_as_current_span("wait for a pool") as span:
            copy = await self._waiting.retry(lambda: self._retry(routed), wait_s)
            if copy is None:
                span.set_attributes(llmops_attributes(error="no_healthy_pool"))
                await (await self._answer(routed, "no_healthy_pool", message))
                return
            span.set_attributes(llmops_attributes(pool=copy.pool))
            await (await self._send_rescued(copy))

    async def _send_rescued(self, copy: RoutedRequest) -> Any:
        """The rescued copy to its new pool's topic (same key: the user's order holds)."""
        self.rerouted += 1
        metrics.count_routed(copy.pool, "rescued")
        return await self._producer.send_event(
            inference_topic(copy.pool).name, copy, key=copy.request.sticky_key
        )

    def decide(self, routed: RoutedRequest) -> RoutedRequest | tuple[Any, str]:
        """The re-routed copy, or (error kind, message) for the app."""
        now = self._clock()
        request = routed.request
        dead = self._board.view(self.pool, now) if self.pool in self._board.names() else None
        why = f"{self.pool} {dead.state} ({dead.why})" if dead else f"{self.pool} is dead"
        if request.expired(now):
            return "deadline_exceeded", f"deadline passed while stranded: {why}"
        if routed.rerouted_from is not None:
            return (
                "no_healthy_pool",
                f"stranded twice: rescued from {routed.rerouted_from}, then {why}",
            )
        try:
            decision = self._board.route(
                self._model(routed), request.adapter, request.sticky_key, now, exclude={self.pool}
            )
        except RoutingError as exc:
            return "no_healthy_pool", f"{why}; no other pool can take it: {exc}"
        return self._copy(routed, decision, why, now)

    def _copy(
        self, routed: RoutedRequest, decision: Decision, why: str, now: datetime
    ) -> RoutedRequest:
        return routed.model_copy(
            update={
                "pool": decision.pool,
                "model": decision.model or routed.model,
                "route_reason": f"rescued: from {why} -> {decision.reason}"[:MAX_ROUTE_REASON],
                "routed_at": now,
                "rerouted_from": self.pool,
            }
        )


class RescueManager:
    """Keeps one rescuer running per dead configured pool, and none for a live one."""

    def __init__(
        self,
        settings: Settings,
        prompts: PromptSet,
        board: PoolBoard,
        producer: Producer,
        waiting: PoolWait | None = None,
    ) -> None:
        self._settings = settings
        self._prompts = prompts
        self._board = board
        self._producer = producer
        self._waiting = waiting
        self._running: dict[str, tuple[Rescuer, ConsumerLoop, asyncio.Task[None]]] = {}
        self.rescuers_started = 0
        self._closing = asyncio.Event()

    def active(self) -> dict[str, Rescuer]:
        return {pool: entry[0] for pool, entry in self._running.items()}

    def _start(self, pool: str) -> None:
        rescuer = Rescuer(
            pool, self._settings, self._prompts, self._board, self._producer, waiting=self._waiting
        )
        loop = ConsumerLoop(
            BusConfig.from_settings(self._settings, client_id="llmops-router"),
            ConsumerConfig.from_settings(
                self._settings,
                topics=[inference_topic(pool).name],
                group_id=inference_group(pool),
                service=f"router-rescue-{pool}",
                max_in_flight=1000,
            ),
            rescuer.handle,
            self._producer,
            on_reject=rejection_replier(self._producer),
        )
        task = asyncio.create_task(loop.run(), name=f"rescue-{pool}")
        self._running[pool] = (rescuer, loop, task)
        self.rescuers_started += 1
        log.warning("pool %s is dead: rescuing its queued requests", pool)

    def reconcile(self, now: datetime) -> None:
        dead = set(self._board.dead(now))
        for pool, (rescuer, loop, task) in list(self._running.items()):
            if task.done():
                del self._running[pool]
                if not task.cancelled() and task.exception() is not None:
                    log.error("rescuer of %s failed: %r", pool, task.exception())
                log.info(
                    "rescuer of %s ended: %d re-routed, %d answered",
                    pool,
                    rescuer.rerouted,
                    rescuer.answered,
                )
            elif pool not in dead:
                loop.stop()  # the pool beats again: drain, commit, leave its group
        for pool in dead - set(self._running):
            self._start(pool)

    async def run(self) -> None:
        """Reconcile twice a second until `close()`."""
        while not self._closing.is_set():
            self.reconcile(utc_now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONCILE_S):
                    await self._closing.wait()

    async def close(self) -> None:
        """Stop every rescuer: each drains, commits what it re-routed and leaves the group."""
        self._closing.set()
        for _, loop, _ in self._running.values():
            loop.stop()
        tasks = {task for _, _, task in self._running.values()}
        if tasks:
            await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S + STOP_MARGIN_S)
        self._running.clear()
