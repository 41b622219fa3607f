"""The live registry: the prompt set as the llm.prompts and llm.experiments topics say it is.

`RegistryFeed` turns one consumed record into a change of a PromptSet, after checking it is
signed by the deployment (anyone who can write a topic could otherwise repoint production at
their own prompt), of a contract the topic carries, and keyed as that contract says.
`read_registry` reads both topics to their end once (the CLI, suites, experiments); the router
follows them for ever with the same feed (services/router/service.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from llmops.config import Settings
from llmops.kafka.deadletter import Rejected
from llmops.kafka.record import Record
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.signing import SigningKeys, keys_from_settings
from llmops.kafka.tail import TopicTail
from llmops.prompts.registry import PromptSet
from schemas import Event, Experiment, LabelMove, PromptVersion
from schemas.prompts import label_key, version_key
from schemas.topics import EVENT_TYPE_HEADER, EXPERIMENTS, PROMPTS

log = logging.getLogger(__name__)
RegistryEvent = PromptVersion | LabelMove | Experiment
# What each registry topic may carry, by event-type header.
CONTRACTS: dict[str, dict[str, type[Event]]] = {
    PROMPTS.name: {"PromptVersion": PromptVersion, "LabelMove": LabelMove},
    EXPERIMENTS.name: {"Experiment": Experiment},
}
STOP_WAIT_S = 5.0
# A quiet registry topic's fetch wait never grows past this, whatever the services' idle wait:
# on a broker that answers a fetch only when its wait runs out (Tansu), it bounds how late a
# label move is seen (the 1 s, with room); on Kafka a fetch returns as data arrives.
REGISTRY_IDLE_WAIT_MS = 400


def registry_idle_wait_ms(settings: Settings) -> int:
    return min(settings.fetch_idle_wait_ms, REGISTRY_IDLE_WAIT_MS)


class RegistryUnavailable(RuntimeError):
    """The registry topics could not be read (no broker, no topics, or too slow)."""


def _event_type(record: Record) -> str | None:
    found = [raw for name, raw in record.headers if name == EVENT_TYPE_HEADER]
    if len(found) != 1 or found[0] is None:
        return None
    try:
        return found[0].decode("ascii")
    except UnicodeDecodeError:
        return None


def _expected_key(event: RegistryEvent) -> str:
    if isinstance(event, PromptVersion):
        return version_key(event.name, event.version)
    if isinstance(event, LabelMove):
        return label_key(event.name, event.label)
    return event.name


class RegistryFeed:
    """Applies verified registry records to `prompts`; anything else raises Rejected."""

    def __init__(self, prompts: PromptSet, keys: SigningKeys | None, max_bytes: int) -> None:
        self.prompts = prompts
        self._keys = keys
        self._max_bytes = max_bytes
        self.applied = 0
        self.rejected = 0
        # Versions the topic has given (the seed's own may be replaced once, by the topic's).
        self._from_topic: set[tuple[str, int]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, prompts: PromptSet | None = None) -> RegistryFeed:
        return cls(prompts or PromptSet(), keys_from_settings(settings), settings.max_message_bytes)

    def decode(self, record: Record) -> RegistryEvent:
        """The record's event, checked; Rejected (with the dead letter's kind) otherwise."""
        contracts = CONTRACTS.get(record.topic)
        if contracts is None:
            raise Rejected("unroutable", f"{record.topic} is not a registry topic")
        event_type = _event_type(record)
        contract = contracts.get(event_type or "")
        if contract is None:
            raise Rejected(
                "schema_invalid",
                f"{record.topic} carries {sorted(contracts)}, not an event of type {event_type!r}",
            )
        record.verify(self._keys, contract)
        event = record.decode(contract, self._max_bytes)
        assert isinstance(event, PromptVersion | LabelMove | Experiment)
        wanted = _expected_key(event)
        if (record.key or b"") != wanted.encode():
            # Compaction keeps the newest record per key: a mis-keyed one would survive (or
            # erase) the wrong state.
            raise Rejected("schema_invalid", f"{contract.__name__} must be keyed {wanted!r}")
        return event

    def apply(self, record: Record) -> RegistryEvent:
        try:
            event = self.decode(record)
        except Rejected:
            self.rejected += 1
            raise
        if isinstance(event, PromptVersion):
            known = self.prompts.versions.get(event.name, {}).get(event.version)
            self._check_immutable(event, known)
            # A seed version of the same number keeps its labels (they count until a move
            # sets the label); the topic's own version replaces its content.
            if known is not None and known.labels:
                labels = sorted(set(known.labels) | set(event.labels))
                event = event.model_copy(update={"labels": labels})
            self.prompts.add(event)
        elif isinstance(event, LabelMove):
            self.prompts.move_label(event)
        else:
            self.prompts.add_experiment(event)
        self.applied += 1
        return event

    def _check_immutable(self, event: PromptVersion, known: PromptVersion | None) -> None:
        """A version number the topic gave once keeps its content: a second record under it
        with other content (two pushes racing for max + 1) is refused; the same content again
        (a replay, a re-read after a broker outage) is a no-op."""
        number = (event.name, event.version)
        conflict = known is not None and known.content_hash != event.content_hash
        if number in self._from_topic and known is not None and conflict:
            self.rejected += 1
            raise Rejected(
                "schema_invalid",
                f"version {event.version} of {event.name!r} exists with other content "
                f"({known.content_hash[:12]}, not {event.content_hash[:12]}): versions "
                "are immutable",
            )
        self._from_topic.add(number)


def registry_tails(
    settings: Settings, on_record: Callable[[Record], None], client_id: str
) -> list[TopicTail]:
    """Readers of both registry topics from their beginning (no group: every partition)."""
    return [
        TopicTail(
            settings.kafka_bootstrap_servers,
            topic,
            on_record,
            client_id=f"{client_id}-{topic}",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            fetch_idle_wait_ms=registry_idle_wait_ms(settings),
            security=KafkaSecurity.from_settings(settings),
        )
        for topic in (PROMPTS.name, EXPERIMENTS.name)
    ]


async def read_registry(
    settings: Settings, timeout_s: float = 10.0, *, base: PromptSet | None = None
) -> PromptSet:
    """The registry as the topics hold it now (verified events only; `base`, when given, is
    the set they apply to). Bad records are skipped and logged: a reader has no one to answer.
    Raises RegistryUnavailable when the topics cannot be read to their end within timeout_s."""
    feed = RegistryFeed.from_settings(settings, base)

    def on_record(record: Record) -> None:
        try:
            feed.apply(record)
        except Rejected as rejected:
            log.warning("registry record %s skipped: %s", record.where, rejected.reason)

    tails = registry_tails(settings, on_record, "llmops-registry-reader")
    runs = [asyncio.create_task(tail.run()) for tail in tails]
    try:
        async with asyncio.timeout(timeout_s):
            await _caught_up(settings, tails, runs)
    except TimeoutError:
        raise RegistryUnavailable(
            f"could not read {PROMPTS.name} and {EXPERIMENTS.name} from "
            f"{settings.kafka_bootstrap_servers} within {timeout_s:g}s (is the platform up?)"
        ) from None
    finally:
        await _stop(tails, runs)
    return feed.prompts


async def _caught_up(
    settings: Settings, tails: list[TopicTail], runs: list[asyncio.Task[None]]
) -> None:
    """Until every tail has read its topic's end; a tail that ends first is the error."""
    everything: asyncio.Future[Any] = asyncio.ensure_future(
        asyncio.gather(*(t.caught_up.wait() for t in tails))
    )
    try:
        while True:
            watched: list[asyncio.Future[Any]] = [*runs, everything]
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if everything in done:
                return
            for run in runs:
                if run.done():
                    raise _unavailable(settings, run.exception())
    finally:
        everything.cancel()


def _unavailable(settings: Settings, error: BaseException | None) -> RegistryUnavailable:
    if isinstance(error, LookupError):
        return RegistryUnavailable(f"{error}: create the platform's topics (`llmops up`)")
    return RegistryUnavailable(
        f"cannot read the registry from {settings.kafka_bootstrap_servers}: {error!r}"
    )


async def _stop(tails: list[TopicTail], runs: list[asyncio.Task[None]]) -> None:
    for tail in tails:
        tail.stop()
    _, pending = await asyncio.wait(runs, timeout=STOP_WAIT_S)
    for task in pending:
        task.cancel()
    for task in runs:
        with contextlib.suppress(BaseException):
            await task
