"""Hostile records for the consumer fuzz test, and what it reads back from the broker.

Records are drawn with hypothesis: documents from our exported JSON Schemas (schemas/json/),
the same documents mutated outside them (wrong types, extreme numbers, huge strings, control
characters, deep nesting at any path), whole-record garbage (not JSON, empty, tombstones,
nesting at the top, oversized), each with hostile keys and headers.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from schemas import DeadLetter

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
Headers = list[tuple[str, bytes | None]]
# Placeholder for nesting too deep to build as Python objects: spliced in as raw text.
_DEEP = re.compile(rb'"__deep_(\d+)__"')


@dataclass(frozen=True)
class FuzzRecord:
    key: bytes | None
    value: bytes | None
    headers: Headers
    what: str  # how it was made, for failure messages

    def __repr__(self) -> str:
        size = -1 if self.value is None else len(self.value)
        return f"FuzzRecord({self.what}, {size} bytes: {(self.value or b'')[:80]!r})"


def render(doc: Any) -> bytes:
    """JSON text of `doc`, with the deep-nesting placeholders expanded."""
    text = json.dumps(doc).encode()
    return _DEEP.sub(lambda m: b"[" * int(m[1]) + b"]" * int(m[1]), text)


# --- values outside every contract -------------------------------------------------------

WRONG_TYPES: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, False, [], {}, "", "x", 0, -1, 1.5, [[1]], {"a": {}}]
)
EXTREME_NUMBERS = st.sampled_from(
    [2**31, 2**63, 2**64, 2**70, -(2**63) - 1, 10**400, 1e308, -1e308, 5e-324, -0.0, -(2**70)]
)
HUGE_STRINGS = st.sampled_from([5_000, 70_000, 300_000]).map(lambda n: "x" * n)
CONTROL_TEXT = st.one_of(
    st.sampled_from(["\x00", "\x1b[2J", "\u202e", "\ud800", "\ufeff", "a\r\nb", "\x7f" * 3]),
    st.text(st.characters(categories=["Cc", "Cf", "Cs", "Co"]), min_size=1, max_size=20),
)
DEEP = st.sampled_from([64, 300, 5_000, 100_000]).map(lambda d: f"__deep_{d}__")
HOSTILE_VALUES = st.one_of(WRONG_TYPES, EXTREME_NUMBERS, HUGE_STRINGS, CONTROL_TEXT, DEEP)


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """`doc` with one value somewhere inside it (or a new field) replaced by a hostile one."""
    if not isinstance(doc, dict | list) or not doc or draw(st.integers(0, 3)) == 0:
        if isinstance(doc, dict) and draw(st.booleans()):
            return {
                **doc,
                draw(st.sampled_from(["extra", "\x00", "x" * 300])): draw(HOSTILE_VALUES),
            }
        return draw(HOSTILE_VALUES)
    if isinstance(doc, dict):
        key = draw(st.sampled_from(sorted(doc)))
        return {**doc, key: draw(mutated(doc[key]))}
    index = draw(st.integers(0, len(doc) - 1))
    return [*doc[:index], draw(mutated(doc[index])), *doc[index + 1 :]]


RAW_GARBAGE = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"1e999",
            b'"text"',
            b"NaN",
            b'{"request_id": "\xff\xfe"}',
            b'{"a": 1, "a": {}}',
            b"{" * 100_000,
            b"[" * 200_000 + b"]" * 200_000,
            b'{"x":' * 50_000 + b"1" + b"}" * 50_000,
        ]
    ),
    st.just(b'"' + b"y" * 1_100_000 + b'"'),  # over any max_message_bytes here
)

# --- keys and headers ---------------------------------------------------------------------

KEYS = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=32),
    st.sampled_from([b"\xff\xfe\x00", b"k" * 100_000]),
)
HEADER_NAMES = st.one_of(
    st.sampled_from(["llmops-event", "content-type", "traceparent", "tracestate", "baggage"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
)
HEADER_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=48),
    st.sampled_from(
        [
            b"\xff\xfe\xfd",
            b"00-zz-zz-01",
            b"00-" + b"f" * 32 + b"-" + b"f" * 16 + b"-ff",
            b"ResponseChunk",
            b"InferenceResult",
            b"application/json",
            b"v" * 20_000,
        ]
    ),
)
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6).map(
    lambda hs: hs + hs[:1]  # a duplicate header, when there is one
)


def exported_schema(name: str) -> dict[str, Any]:
    """A contract's JSON Schema as outside clients get it (schemas/json/), tamed."""
    schema: dict[str, Any] = tame(json.loads((SCHEMAS / f"{name}.json").read_text()))
    return schema


DATES = ["2026-12-01T12:00:00.123456+05:30", "2000-02-29T23:59:59Z", "2099-01-01T00:00:00Z"]


def tame(schema: Any) -> Any:
    """The schema with small size limits: still only valid documents, drawn in milliseconds
    (RoutedRequest's own limits take hypothesis-jsonschema minutes per batch, blocking the
    event loop the consumers share; size, extremes and unknown fields are the mutations'
    job)."""
    if isinstance(schema, list):
        return [tame(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: tame(v) for k, v in schema.items()}
    if out.get("format") == "date-time" and "formatMinimum" in out:
        # hypothesis-jsonschema ignores formatMinimum/-Maximum: the edges and a few between.
        out = {"enum": [out["formatMinimum"], out["formatMaximum"], *DATES]}
    for limit, most in (("maxItems", 2), ("maxLength", 40), ("maxProperties", 3)):
        if isinstance(out.get(limit), int):
            out[limit] = min(out[limit], most)
    if "properties" in out:
        out.setdefault("additionalProperties", False)  # unknown fields: a mutation adds them
    return out


@functools.cache
def _documents(schema: str) -> st.SearchStrategy[Any]:
    # One strategy per schema: hypothesis-jsonschema prepares a schema at its first draw,
    # which for RoutedRequest costs seconds.
    return from_schema(json.loads(schema))


@st.composite
def fuzz_batch(
    draw: st.DrawFn, schema: dict[str, Any], fix: Callable[[Any, str], Any]
) -> list[FuzzRecord]:
    """Every kind of hostile record at least once, then more of any kind.

    `fix(doc, id)` adjusts a schema-valid document before it is mutated (a unique request id,
    a reply topic we read), so each record can be told apart in what the consumers produce.
    """
    docs = _documents(json.dumps(schema, sort_keys=True))
    # Ids only tell records apart afterwards: not drawn, so the examples stay reproducible.
    run = uuid.uuid4().hex[:10]
    counter = iter(range(1_000_000))

    def doc() -> Any:
        return fix(draw(docs), f"fz{run}-{next(counter)}")

    def record(value: bytes | None, what: str) -> FuzzRecord:
        return FuzzRecord(draw(KEYS), value, draw(HEADERS), what)

    batch = [
        record(render(doc()), "valid"),
        record(render(doc()), "valid"),
        *(record(render(draw(mutated(doc()))), "mutated") for _ in range(5)),
        record(draw(RAW_GARBAGE), "garbage"),
        record(draw(RAW_GARBAGE), "garbage"),
        record(None, "tombstone"),
    ]
    for kind in draw(st.lists(st.sampled_from(["valid", "mutated", "garbage"]), max_size=6)):
        if kind == "valid":
            batch.append(record(render(doc()), kind))
        elif kind == "mutated":
            batch.append(record(render(draw(mutated(doc()))), kind))
        else:
            batch.append(record(draw(RAW_GARBAGE), kind))
    return batch


# --- reading back -------------------------------------------------------------------------

Source = tuple[str, int, int]  # topic, partition, offset


@dataclass
class TopicIndex:
    """Follows a topic from its beginning in the background, indexing what it finds."""

    bootstrap: str
    topic: str
    index: Callable[[Any], None]
    records: int = 0
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self, partitions: int) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await self._consumer.start()
        parts = [TopicPartition(self.topic, p) for p in range(partitions)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            for raws in (await self._consumer.getmany(timeout_ms=100)).values():
                for raw in raws:
                    self.records += 1
                    self.index(raw)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


@dataclass
class DeadLetters:
    """llm.dlq by (service, source): the letters each service wrote about each record."""

    by_source: dict[tuple[str, Source], list[DeadLetter]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def index(self, raw: Any) -> None:
        try:
            letter = DeadLetter.model_validate_json(raw.value or b"")
        except ValueError:
            return
        source = (letter.source_topic, letter.source_partition, letter.source_offset)
        self.by_source[(letter.service, source)].append(letter)

    def about(self, service: str, source: Source) -> list[DeadLetter]:
        return self.by_source.get((service, source), [])


async def committed(
    bootstrap: str, group: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The group's committed offsets (correct on Tansu, unlike its end offsets). A consumer
    that never subscribes asks without joining the group (aiokafka's admin client cannot
    decode Tansu's OffsetFetch answer)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        out = {}
        for topic, partition in partitions:
            offset = await consumer.committed(TopicPartition(topic, partition))
            out[(topic, partition)] = -1 if offset is None else offset
        return out
    finally:
        await consumer.stop()
