"""The router service: llm.requests -> (prompt, variant, pool) -> llm.inference.<pool>.

Beside the request loop run the router's control plane: it follows llm.pools.status from the
beginning into the pool board (pool states, breakers), follows the prompt registry (llm.prompts
and llm.experiments, on top of the seed file's prompts) so a moved label serves the next
request, with no restart and no polling, and rescues the queued requests of pools the board
declares dead (services/router/rescue.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from llmops.config import Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import ConsumerConfig, ConsumerLoop, Handler, RejectHook
from llmops.kafka.deadletter import Rejected
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from llmops.kafka.replies import (
    error_result,
    publish_result,
    rejection_replier,
    rejection_result,
)
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.signing import keys_from_settings
from llmops.kafka.tail import TopicTail
from llmops.prompts.live import RegistryFeed, registry_idle_wait_ms
from llmops.prompts.registry import (
    MissingVariable,
    PromptError,
    PromptSet,
    apply_prompt_defaults,
)
from llmops.telemetry import metrics
from llmops.telemetry.conventions import (
    genai_request_parameters,
    llmops_attributes,
    messaging_span_name,
)
from llmops.telemetry.ratelog import RejectionLog
from llmops.telemetry.spans import consumer_span
from schemas import PoolStatus, PromptRequest, RoutedRequest, utc_now
from schemas.base import MAX_ROUTE_REASON
from schemas.deadletters import DeadLetterKind
from schemas.topics import DLQ, EXPERIMENTS, POOL_STATUS, PROMPTS, REQUESTS, inference_topic
from services.router.board import PoolBoard
from services.router.choice import NoHealthyPool, RoutingError
from services.router.policy import route
from services.router.rescue import RescueManager
from services.router.waiting import PoolWait

log = logging.getLogger(__name__)
tracer = trace.get_tracer("llmops.router")
GROUP_ID = "llmops-router"
# Requests wait at most this long at start for the pool status history to be read; routing
# by configuration alone (cold start) covers the rest.
CATCH_UP_WAIT_S = 5.0
FEED_RETRY_S = 1.0
STOP_WAIT_S = 5.0


class Router:
    def __init__(
        self,
        settings: Settings,
        prompts: PromptSet,
        producer: Producer,
        board: PoolBoard | None = None,
    ) -> None:
        self._settings = settings
        self._prompts = prompts
        self._producer = producer
        self.board = board or PoolBoard(settings.pools, settings.routing, utc_now())
        self.waiting = PoolWait(settings.routing.wait_for_pool_s, settings.routing.max_parked)
        metrics.PARKED.labels("router").set_function(lambda: self.waiting.parked)
        self.routed = 0
        self.routed_by_pool: Counter[str] = Counter()
        self.no_healthy_pool = 0
        self.bad_statuses = 0
        self._letters: set[asyncio.Future[None]] = set()
        self._status_rejections = RejectionLog(log, "router-status")  # bounded rate
        # Only signed beats steer routing: anyone who can write the topic could forge one.
        self._signing = keys_from_settings(settings)
        # Registry events change `prompts` in place: the rescuers share the same set.
        self.registry = RegistryFeed(prompts, self._signing, settings.max_message_bytes)
        self._registry_rejections = RejectionLog(log, "router-registry")
        # Set once both registry topics were read to their end: older bad records were
        # dead-lettered when they were new.
        self.registry_live = False

    def on_registry(self, record: Record) -> None:
        """A prompt version, label move or experiment into the prompt set; a bad one (unsigned,
        forged, malformed, mis-keyed) is dead-lettered and changes nothing."""
        try:
            self.registry.apply(record)
        except Rejected as rejected:
            self._registry_rejections.rejected(rejected.kind, rejected.reason, record.where)
            if self.registry_live:
                self._send_letter(record, rejected, "router-registry")

    def on_status(self, record: Record) -> None:
        """A heartbeat from llm.pools.status into the board; a bad one is dead-lettered."""
        try:
            record.verify(self._signing, PoolStatus)
            status = record.decode(PoolStatus, self._settings.max_message_bytes)
        except Rejected as rejected:
            self.bad_statuses += 1
            self._status_rejections.rejected(rejected.kind, rejected.reason, record.where)
            # Only live ones: the history was dead-lettered when it was live (no replays
            # of old letters at every restart).
            if self.board.live:
                self._send_letter(record, rejected, "router-status")
            return
        self.board.observe(status, utc_now())
        self.waiting.wake()

    def _send_letter(self, record: Record, rejected: Rejected, service: str) -> None:
        letter = asyncio.ensure_future(self._dead_letter(record, rejected, service))
        self._letters.add(letter)  # held until sent: tasks are weakly referenced
        letter.add_done_callback(self._letters.discard)

    async def _dead_letter(self, record: Record, rejected: Rejected, service: str) -> None:
        metrics.count_dead_letter(service, rejected.kind)
        letter = record.dead_letter(rejected, service)
        try:
            await (await self._producer.send_event(DLQ.name, letter, key=record.topic))
        except Exception as exc:
            log.warning("dead letter for %s@%d failed: %r", record.topic, record.offset, exc)

    async def handle(self, record: Record) -> Any:
        request = record.decode(PromptRequest, self._settings.max_message_bytes)
        with consumer_span(
            tracer,
            messaging_span_name("route", record.topic),
            record.headers,
            record.topic,
            record.partition,
            record.offset,
            attributes=llmops_attributes(request_id=request.request_id),
        ) as span:
            now = utc_now()
            if request.expired(now):
                metrics.count_unrouted("deadline_exceeded")
                result = error_result(
                    request.request_id,
                    "deadline_exceeded",
                    "deadline passed before routing",
                    request=request,
                    finish_reason="timeout",
                )
                return asyncio.gather(
                    *await publish_result(self._producer, result, request.reply_to)
                )
            try:
                routed = self._route(request, now)
            except PromptError as exc:
                raise prompt_rejection(request, exc) from exc
            except NoHealthyPool as exc:
                # Not bad input (no dead letter): the platform cannot serve it right now.
                wait_s = self.waiting.wait_s(now, request.deadline)
                if wait_s > 0 and self.waiting.can_park():
                    span.set_attributes(llmops_attributes(parked_s=wait_s))
                    return asyncio.ensure_future(self._park(request, exc, wait_s))
                reason = f"no_healthy_pool: {exc}"[:MAX_ROUTE_REASON]
                span.set_attributes(llmops_attributes(route_reason=reason))
                return await self._no_healthy_pool(request, str(exc))
            except RoutingError as exc:
                raise Rejected(
                    "unroutable", str(exc), request.request_id, request.reply_to
                ) from exc
            return await self._send_routed(routed, span)

    def _route(self, request: PromptRequest, now: datetime) -> RoutedRequest:
        """The routing decision, with the chosen prompt version's sampling defaults."""
        routed = route(request, self._prompts, self._settings.pools, now, self.board)
        if routed.prompt_name is None or routed.prompt_version is None:
            return routed
        version = self._prompts.versions[routed.prompt_name][routed.prompt_version]
        with_defaults = apply_prompt_defaults(routed.request, version)
        if with_defaults is routed.request:
            return routed
        return routed.model_copy(update={"request": with_defaults})

    async def _send_routed(self, routed: RoutedRequest, span: Span) -> Any:
        span.set_attributes(
            {
                **llmops_attributes(
                    pool=routed.pool, variant=routed.variant, route_reason=routed.route_reason
                ),
                **genai_request_parameters(model=routed.model),
            }
        )
        ack = await self._producer.send_event(
            inference_topic(routed.pool).name, routed, key=routed.request.sticky_key
        )
        self.routed += 1
        self.routed_by_pool[routed.pool] += 1
        metrics.count_routed(routed.pool, routed.route_reason)
        return ack

    async def _no_healthy_pool(self, request: PromptRequest, why: str) -> Any:
        self.no_healthy_pool += 1
        metrics.count_unrouted("no_healthy_pool")
        result = error_result(request.request_id, "no_healthy_pool", why, request=request)
        return asyncio.gather(*await publish_result(self._producer, result, request.reply_to))

    async def _unresolvable(self, request: PromptRequest, error: PromptError, span: Span) -> Any:
        """The reply to a request whose prompt stopped resolving while it waited for a pool:
        what it would have got had it arrived now (no dead letter: it was valid then)."""
        rejected = prompt_rejection(request, error)
        metrics.count_unrouted(rejected.kind)
        reason = f"{rejected.kind}: {rejected.reason}"[:MAX_ROUTE_REASON]
        span.set_attributes(llmops_attributes(route_reason=reason))
        result = rejection_result(rejected, request.request_id, request=request)
        return asyncio.gather(*await publish_result(self._producer, result, request.reply_to))

    async def _park(self, request: PromptRequest, first: NoHealthyPool, wait_s: float) -> None:
        """Wait for a pool (services/router/waiting.py); route the request, or answer it."""
        last: list[Exception] = [first]

        def attempt() -> RoutedRequest | None:
            try:
                return self._route(request, utc_now())
            except RoutingError as exc:
                last[0] = exc
                return None

        # The task runs in the routing span's context: this span is its child.
        with tracer.start_as_current_span("wait for a pool") as span:
            try:
                routed = await self.waiting.retry(attempt, wait_s)
            except PromptError as exc:
                # A label moved while it waited, to a version this request cannot fill (a new
                # required variable, say): no pool can fix that, so it is answered now, as the
                # prompt error it is.
                await (await self._unresolvable(request, exc, span))
                return
            if routed is not None:
                await (await self._send_routed(routed, span))
                return
            why = f"{last[0]} (waited {wait_s:.1f}s for a pool)"
            reason = f"no_healthy_pool: {why}"[:MAX_ROUTE_REASON]
            span.set_attributes(llmops_attributes(route_reason=reason))
            await (await self._no_healthy_pool(request, why))


def prompt_rejection(request: PromptRequest, error: PromptError) -> Rejected:
    """A request its prompt cannot serve: an unknown prompt, label or version, or a missing
    or mistyped variable."""
    kind: DeadLetterKind = (
        "missing_variable" if isinstance(error, MissingVariable) else "unknown_prompt"
    )
    return Rejected(kind, str(error), request.request_id, request.reply_to)


class ControlPlane:
    """The pool status feed into the board, the registry feeds into the prompt set, and the
    rescuers of dead pools."""

    def __init__(self, settings: Settings, router: Router, rescues: RescueManager) -> None:
        self._settings = settings
        self._router = router
        self.rescues = rescues
        self.caught_up = asyncio.Event()
        # Both registry topics read to their end (each feed sets its own first).
        self.registry_caught_up = asyncio.Event()
        self._registry_read: set[str] = set()
        self._stopping = asyncio.Event()
        self._tails: dict[str, TopicTail] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def _status_tail(self) -> TopicTail:
        return TopicTail(
            self._settings.kafka_bootstrap_servers,
            POOL_STATUS.name,
            self._router.on_status,
            client_id="llmops-router-status",
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
            fetch_idle_wait_ms=self._settings.fetch_idle_wait_ms,
            on_poll=self._router.board.note_feed,
            security=KafkaSecurity.from_settings(self._settings),
        )

    def _registry_tail(self, topic: str) -> TopicTail:
        # Label moves are rare: the wait grows when quiet, up to a bound that keeps a move's
        # propagation well under a second (llmops/prompts/live.py).
        return TopicTail(
            self._settings.kafka_bootstrap_servers,
            topic,
            self._router.on_registry,
            client_id=f"llmops-router-{topic}",
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
            fetch_idle_wait_ms=registry_idle_wait_ms(self._settings),
            security=KafkaSecurity.from_settings(self._settings),
        )

    async def _follow(
        self, topic: str, make: Callable[[], TopicTail], on_caught_up: Callable[[], None]
    ) -> None:
        """Read the topic until stopped; after a failure, read it again from its beginning
        (what was applied stays: replaying a state topic only reapplies its states)."""
        failures = 0
        while not self._stopping.is_set():
            self._tails[topic] = tail = make()
            watcher = asyncio.create_task(self._when_caught_up(tail, on_caught_up))
            try:
                await tail.run()
            except Exception as exc:  # the broker went away (or the topic is missing)
                failures += 1
                # The first failure in a row is worth a warning; a long outage, no flood.
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "%s feed failed, retrying: %r", topic, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FEED_RETRY_S):
                        await self._stopping.wait()
            else:
                failures = 0
            finally:
                watcher.cancel()

    @staticmethod
    async def _when_caught_up(tail: TopicTail, then: Callable[[], None]) -> None:
        await tail.caught_up.wait()
        then()

    def _status_live(self) -> None:
        self._router.board.mark_live(utc_now())
        self.caught_up.set()

    def _registry_live(self, topic: str) -> Callable[[], None]:
        def mark() -> None:
            self._registry_read.add(topic)
            if self._registry_read >= {PROMPTS.name, EXPERIMENTS.name}:
                self._router.registry_live = True
                self.registry_caught_up.set()

        return mark

    async def on_loop_start(self, loop: ConsumerLoop) -> None:
        """The request loop's companion: start, and give the pool status history a bounded
        while to be read before requests are routed."""
        self.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CATCH_UP_WAIT_S):
                await self.caught_up.wait()
                await self.registry_caught_up.wait()

    def on_loop_stopping(self) -> None:
        """Nothing to tell: rescues and the status feed run until the loop has drained."""

    async def on_loop_end(self) -> None:
        await self.stop()

    def start(self) -> None:
        self._stopping.clear()
        status = self._follow(POOL_STATUS.name, self._status_tail, self._status_live)
        self._tasks = [
            asyncio.create_task(status, name="router-status"),
            *(
                asyncio.create_task(
                    self._follow(
                        topic,
                        functools.partial(self._registry_tail, topic),
                        self._registry_live(topic),
                    ),
                    name=f"router-{topic}",
                )
                for topic in (PROMPTS.name, EXPERIMENTS.name)
            ),
            asyncio.create_task(self.rescues.run(), name="router-rescues"),
        ]

    async def stop(self) -> None:
        # Events first, cancel() only as a fallback: a cancel can be lost in a library's
        # wait on Python 3.11, and stop() must never hang.
        self._stopping.set()
        for tail in self._tails.values():
            tail.stop()
        await self.rescues.close()
        pending = {t for t in self._tasks if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=STOP_WAIT_S)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=STOP_WAIT_S)


class RouterLoop(ConsumerLoop):
    """The router's request loop, with its control plane running beside it."""

    def __init__(
        self,
        bus: BusConfig,
        config: ConsumerConfig,
        handler: Handler,
        producer: Producer,
        *,
        control: ControlPlane,
        on_reject: RejectHook | None = None,
    ) -> None:
        super().__init__(bus, config, handler, producer, on_reject, companions=[control])
        self.control = control


def build_router(
    settings: Settings, prompts: PromptSet, producer: Producer, *, group_id: str = GROUP_ID
) -> tuple[Router, RouterLoop]:
    bus = BusConfig.from_settings(settings, client_id="llmops-router")
    router = Router(settings, prompts, producer)
    loop = RouterLoop(
        bus,
        ConsumerConfig.from_settings(
            settings,
            topics=[REQUESTS.name],
            group_id=group_id,
            service="router",
            max_in_flight=5000,
        ),
        router.handle,
        producer,
        control=ControlPlane(
            settings,
            router,
            RescueManager(settings, prompts, router.board, producer, router.waiting),
        ),
        on_reject=rejection_replier(producer),
    )
    return router, loop
