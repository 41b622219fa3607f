"""Every consumer, every input topic, fed hostile records on the real broker (and store).

For each input topic, hypothesis draws batches of records (see fuzz_kit.py: schema-valid
documents, mutations outside the schema, garbage, hostile keys and headers), then one good
record. Required of every consumer of the topic:
- it does not die (in-process loops still running, the metrics worker still up);
- it keeps committing: its group's committed offset passes the last fuzz record (the offset
  from the produce ack: end offsets are wrong on Tansu);
- each record is processed, or dead-lettered exactly once by it with a non-empty reason
  (matched by source topic/partition/offset); consumers of topics whose bad input is not
  dead-lettered (llm.dlq itself, the features topic, reply topics) log and skip it;
- the good record sent after the batch is served.
Rejections are logged once per kind per interval, never with a traceback per record.

LLMOPS_FUZZ_EXAMPLES (default 2) sets the batches per topic; each batch has 10 to 16
records. Examples are derandomized (reproducible in CI) and not shrunk (each costs broker
round trips); a failing batch is printed whole. The counts per topic are printed at the end
(`-s`), and written as JSON to LLMOPS_FUZZ_REPORT when it names a file.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, settings

from llmops.kafka.deadletter import Rejected
from llmops.kafka.record import Record
from llmops.kafka.replies import publish_result
from llmops.prompts.publish import publish
from llmops.telemetry.ratelog import REJECTION_LOG_INTERVAL_S
from schemas import (
    Experiment,
    Feedback,
    InferenceResult,
    LabelMove,
    PoolStatus,
    PromptVersion,
    QualityWindow,
    RoutedRequest,
    Variant,
    utc_now,
)
from schemas.topics import (
    DLQ,
    EVENT_TYPE_HEADER,
    EXPERIMENTS,
    FEEDBACK,
    METRICS,
    POOL_STATUS,
    PROMPTS,
    REQUESTS,
    RESPONSES,
    inference_topic,
    reply_topic,
    response_features_topic,
)
from services.inference.engines.fake import FakeEngine
from services.inference.heartbeat import Heartbeat
from streams.features import (
    ResponseFeatures,
    ResponseFeaturesBatch,
    extract_features,
    group_key_text,
)
from tests.integration.fuzz_harness import (
    APP_ID,
    CLIENT_ID,
    DEAD,
    DECOY,
    GROUPS,
    MAX_MESSAGE_BYTES,
    POOL,
    ConsumerDied,
    Harness,
    payload_doc,
    running_harness,
    wait_until,
)
from tests.integration.fuzz_kit import FuzzRecord, Source, exported_schema, fuzz_batch, tame

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("LLMOPS_FUZZ_EXAMPLES", "2"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
REPLY = reply_topic(CLIENT_ID).name
FEATURES = response_features_topic(APP_ID).name


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzz(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with running_harness(store_url, tmp_path_factory.mktemp("fuzz")) as harness:
        yield harness
        counts = {topic: asdict(t) for topic, t in sorted(harness.tallies.items())}
        print("\nfuzz counts per topic:", json.dumps(counts, indent=1))
        if report := os.environ.get("LLMOPS_FUZZ_REPORT"):
            await asyncio.to_thread(Path(report).write_text, json.dumps(counts, indent=1))


# --- making schema-valid documents traceable ------------------------------------------------


def _request_fix(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    # The schema cannot say "exactly one of messages and prompt": keep the messages, or
    # the prompt alone (the router looks it up: unknown ones are dead letters), or add some.
    if doc.get("messages"):
        doc = {**doc, "prompt": None}
    elif doc.get("prompt") is None:
        doc = {**doc, "messages": [{"role": "user", "content": rid}]}
    return {**doc, "request_id": rid, "reply_to": REPLY}


def fix_routed(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    return {**doc, "request": _request_fix(doc.get("request") or {}, rid)}


def fix_status(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    # A configured pool that serves nothing: hostile but valid beats reach the board.
    return {**doc, "pool": DECOY, "instance": rid}


def fix_letter(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    return {**doc, "event_id": rid, "service": rid}


def fix_features(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    return {**doc, "request_id": rid, "prompt_name": rid}


def fix_packed(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    members = doc.get("features")
    if not isinstance(members, list):
        return doc
    fixed = [
        fix_features(m, f"{rid}-{i}") if isinstance(m, dict) else m for i, m in enumerate(members)
    ]
    return {**doc, "features": fixed}


def fix_result(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    return {**doc, "request_id": rid}


# --- what counts as processed ---------------------------------------------------------------


def field_of(record: FuzzRecord, *path: str) -> str | None:
    doc = payload_doc(record.value)
    for name in path:
        doc = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(doc, str):
        return None
    try:
        doc.encode()  # JSON may spell lone surrogates: no id of anything stored
    except UnicodeEncodeError:
        return None
    return doc


def valid(record: FuzzRecord, contract: Any) -> bool:
    """Would the consumer decode it? (the same decoding every consumer uses)"""
    raw = Record("t", 0, 0, record.key, record.value, [], 0)
    try:
        raw.decode(contract, MAX_MESSAGE_BYTES)
    except Rejected:
        return False
    return True


Evidence = Callable[[Harness, Sequence[FuzzRecord]], list[bool]]


def answered(path: tuple[str, ...]) -> Evidence:
    """A result (or error result) for the record's request id reached llm.responses."""
    return lambda h, rs: [
        (rid := field_of(r, *path)) is not None and rid in h.responses for r in rs
    ]


def stored(table: str, column: str, path: tuple[str, ...]) -> Evidence:
    def check(h: Harness, records: Sequence[FuzzRecord]) -> list[bool]:
        ids = [field_of(r, *path) for r in records]
        found = h.stored(table, column, [i for i in ids if i is not None])
        return [i is not None and i in found for i in ids]

    return check


def decodes(contract: Any) -> Evidence:
    return lambda _h, rs: [valid(r, contract) for r in rs]


@dataclass(frozen=True)
class Consumer:
    name: str
    service: str | None  # its dead letters' service; None: it logs and skips bad input
    processed: Evidence
    covered_by: str | None = None  # a service whose dead letter of the record suffices


async def feed(
    h: Harness,
    topic: str,
    batch: list[FuzzRecord],
    consumers: Sequence[Consumer],
    good: Callable[[Harness], Awaitable[None]],
    signed_as: str | None = None,
) -> None:
    if signed_as is not None:
        batch = h.signed(topic, batch, signed_as)
    h.alive()  # a consumer that died before this topic's input is not this topic's crash
    try:
        sources = await h.produce(topic, batch)
        await good(h)  # served although every bad record came first
        await wait_until(
            lambda: h.committed_past(GROUPS.get(topic, []), sources),
            f"the commits of {GROUPS.get(topic)} past the fuzz records on {topic}",
            h.alive,
        )
        for consumer in consumers:
            await account(h, topic, batch, sources, consumer)
        h.alive()
    except ConsumerDied:
        for consumer in consumers:
            h.tallies[f"{topic} -> {consumer.name}"].crashes += 1
        raise


async def account(
    h: Harness,
    topic: str,
    batch: list[FuzzRecord],
    sources: list[Source],
    consumer: Consumer,
) -> None:
    outcome: list[str] = []

    async def settled() -> bool:
        nonlocal outcome
        processed = await asyncio.to_thread(consumer.processed, h, batch)
        outcome = []
        for source, done in zip(sources, processed, strict=True):
            letters = h.letters.about(consumer.service, source) if consumer.service else []
            covered = consumer.covered_by and h.letters.about(consumer.covered_by, source)
            if letters:
                outcome.append("dead_lettered")
            elif done:
                outcome.append("processed")
            elif consumer.service is None:
                outcome.append("skipped")
            elif covered:
                outcome.append("covered")
            else:
                outcome.append("unaccounted")
        return "unaccounted" not in outcome

    try:
        await wait_until(settled, f"every record on {topic} accounted by {consumer.name}", h.alive)
    except AssertionError:
        lost = [r for r, o in zip(batch, outcome, strict=True) if o == "unaccounted"]
        raise AssertionError(
            f"{consumer.name} neither processed nor dead-lettered: {lost}"
        ) from None
    if consumer.service is not None:
        for record, source in zip(batch, sources, strict=True):
            letters = h.letters.about(consumer.service, source)
            assert len(letters) <= 1, f"{consumer.name} dead-lettered {record} {len(letters)} times"
            assert all(letter.reason.strip() for letter in letters), letters
            for letter in letters:
                kinds = h.tallies[f"{topic} -> {consumer.name}"].kinds
                kinds[letter.kind] = kinds.get(letter.kind, 0) + 1
    tally = h.tallies[f"{topic} -> {consumer.name}"]
    counts = Counter(outcome)
    tally.records += len(batch)
    tally.processed += counts["processed"]
    tally.dead_lettered += counts["dead_lettered"]
    tally.skipped += counts["skipped"] + counts["covered"]


# --- good records ----------------------------------------------------------------------------


async def good_request(h: Harness) -> None:
    result = await h.client.generate([{"role": "user", "content": "good after bad"}])
    assert result.error is None and result.pool == POOL, result
    await wait_until(
        lambda: asyncio.to_thread(
            lambda: bool(h.stored("requests", "request_id", [result.request_id]))
        ),
        "the good request's row",
        h.alive,
    )


def good_routed(pool: str) -> Callable[[Harness], Awaitable[None]]:
    async def send(h: Harness) -> None:
        request = h.client.build_request([{"role": "user", "content": "good after bad"}])
        assert request.messages is not None
        routed = RoutedRequest(
            request=request,
            messages=request.messages,
            pool=pool,
            model="fake",
            route_reason="fuzz",
            routed_at=utc_now(),
        )
        pending = h.client.expect(request.request_id)
        await (await h.producer.send_event(inference_topic(pool).name, routed))
        result = await h.client.wait(request.request_id, pending, 60)
        assert result.error is None and result.pool == POOL, result

    return send


async def good_status(h: Harness) -> None:
    decoy = next(p for p in h.settings.pools if p.name == DECOY)
    beat = Heartbeat(h.settings, decoy, h.producer, FakeEngine(model="fake"))
    await beat.beat()
    board = h.services["router"].board

    async def seen() -> bool:
        return beat.instance in board._pools[DECOY].instances

    await wait_until(seen, "the good heartbeat on the router's board", h.alive)


async def good_result(h: Harness) -> None:
    result = InferenceResult(request_id=f"good-{uuid.uuid4().hex}", finish_reason="stop")
    await asyncio.gather(*await publish_result(h.producer, result, None))
    await wait_until(
        lambda: asyncio.to_thread(
            lambda: bool(h.stored("responses", "request_id", [result.request_id]))
        ),
        "the good response's row",
        h.alive,
    )


async def good_letter(h: Harness) -> None:
    letter = Record("fuzz", 0, 0, None, b"{", [], 0).dead_letter(
        Rejected("not_json", "a good dead letter"), f"good-{uuid.uuid4().hex}"
    )
    await (await h.producer.send_event(DLQ.name, letter, key=b"fuzz"))
    await wait_until(
        lambda: asyncio.to_thread(
            lambda: bool(h.stored("dead_letters", "event_id", [letter.event_id]))
        ),
        "the good dead letter's row",
        h.alive,
    )


async def good_features(h: Harness) -> None:
    name = f"good-{uuid.uuid4().hex}"
    result = InferenceResult(request_id=name, prompt_name=name, finish_reason="stop")
    features = extract_features(result)
    key = group_key_text(features.group).encode()
    await (await h.producer.send(FEATURES, features.to_bytes(), key))
    await wait_until(
        lambda: asyncio.to_thread(lambda: bool(h.stored("metric_windows", "prompt_name", [name]))),
        "the good response's metric window",
        h.alive,
    )


async def good_reply(h: Harness) -> None:
    rid = f"good-{uuid.uuid4().hex}"
    pending = h.client.expect(rid)
    result = InferenceResult(request_id=rid, finish_reason="stop")
    await (await h.producer.send_event(REPLY, result, key=rid))
    assert (await h.client.wait(rid, pending, 60)).request_id == rid


# --- the tests: one per input topic ----------------------------------------------------------


@FUZZ
@given(batch=fuzz_batch(exported_schema("PromptRequest"), _request_fix))
async def test_requests_router_and_metrics(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    await feed(
        fuzz,
        REQUESTS.name,
        batch,
        [
            Consumer("router", "router", answered(("request_id",))),
            # The metrics worker stores valid requests; a bad one is dead-lettered once, by the
            # router (or, before that change, by the worker too: once per service).
            Consumer(
                "metrics", "streams", stored("requests", "request_id", ("request_id",)), "router"
            ),
        ],
        good_request,
    )


@FUZZ
@given(batch=fuzz_batch(exported_schema("RoutedRequest"), fix_routed))
async def test_inference_pool(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    evidence = answered(("request", "request_id"))
    consumer = Consumer(f"pool {POOL}", f"inference-{POOL}", evidence)
    await feed(fuzz, inference_topic(POOL).name, batch, [consumer], good_routed(POOL))


@FUZZ
@given(batch=fuzz_batch(exported_schema("RoutedRequest"), fix_routed))
async def test_rescuer_of_a_dead_pool(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    evidence = answered(("request", "request_id"))
    consumer = Consumer(f"rescuer of {DEAD}", f"router-rescue-{DEAD}", evidence)
    await feed(fuzz, inference_topic(DEAD).name, batch, [consumer], good_routed(DEAD))


@FUZZ
@given(batch=fuzz_batch(exported_schema("PoolStatus"), fix_status))
async def test_router_status_reader(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    consumer = Consumer("router status", "router-status", decodes(PoolStatus))
    await feed(fuzz, POOL_STATUS.name, batch, [consumer], good_status, "PoolStatus")


def fix_registry(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    # Names of their own: a hostile valid event never touches another test's prompt.
    return {**doc, "name": f"fuzz-{rid}"}


async def good_registry(h: Harness) -> None:
    """A signed version, label move and experiment reach the router; its prompt is served."""
    name = f"fuzz-good-{uuid.uuid4().hex[:8]}"
    version = PromptVersion.model_validate(
        {"name": name, "version": 1, "messages": [{"role": "user", "content": "good"}]}
    )
    await publish(h.producer, [version], [LabelMove(name=name, label="production", version=1)])
    experiment = Experiment(
        name=name, prompt_name=name, variants=[Variant(name="a", prompt_version=1, weight=1)]
    )
    ack = await h.producer.send_event(EXPERIMENTS.name, experiment, key=name, sign=True)
    await ack
    prompts = h.services["router"].registry.prompts

    async def seen() -> bool:
        return prompts.label_version(name, "production") == 1 and name in prompts.experiments

    await wait_until(seen, "the good registry events in the router", h.alive)
    result = await h.client.generate(prompt=name)
    assert result.error is None and result.prompt_version == 1, result


@FUZZ
@given(batch=fuzz_batch(exported_schema("LabelMove"), fix_registry))
async def test_router_registry_reader(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    router = Consumer("router registry", "router-registry", decodes(LabelMove))
    history = Consumer("prompt history", None, stored("prompt_history", "event_id", ("event_id",)))
    await feed(fuzz, PROMPTS.name, batch, [router, history], good_registry, "LabelMove")


@FUZZ
@given(batch=fuzz_batch(exported_schema("Experiment"), fix_registry))
async def test_router_experiments_reader(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    router = Consumer("router experiments", "router-registry", decodes(Experiment))
    history = Consumer(
        "experiment history", "streams", stored("experiment_events", "name", ("name",))
    )
    await feed(fuzz, EXPERIMENTS.name, batch, [router, history], good_registry, "Experiment")


@FUZZ
@given(batch=fuzz_batch(exported_schema("InferenceResult"), fix_result))
async def test_metrics_responses(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    evidence = stored("responses", "request_id", ("request_id",))
    consumer = Consumer("metrics", "streams", evidence)
    await feed(fuzz, RESPONSES.name, batch, [consumer], good_result, "InferenceResult")


@FUZZ
@given(batch=fuzz_batch(exported_schema("DeadLetter"), fix_letter))
async def test_metrics_dead_letters(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    evidence = stored("dead_letters", "event_id", ("event_id",))
    await feed(fuzz, DLQ.name, batch, [Consumer("metrics", None, evidence)], good_letter)


async def good_feedback(h: Harness) -> None:
    """Signed or not (any Kafka client may send feedback): a good one is stored."""
    rid = f"good-{uuid.uuid4().hex}"
    await (await h.producer.send_event(FEEDBACK.name, Feedback(request_id=rid, score=1.0), key=rid))
    await wait_until(
        lambda: asyncio.to_thread(lambda: bool(h.stored("feedback", "request_id", [rid]))),
        "the good feedback's row",
        h.alive,
    )


@FUZZ
@given(batch=fuzz_batch(exported_schema("Feedback"), fix_result))
async def test_metrics_feedback(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    evidence = stored("feedback", "request_id", ("request_id",))
    await feed(
        fuzz, FEEDBACK.name, batch, [Consumer("feedback", "streams", evidence)], good_feedback
    )


@FUZZ
@given(batch=fuzz_batch(exported_schema("InferenceResult"), fix_result))
async def test_sdk_reply_reader(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    consumer = Consumer("sdk replies", None, decodes(InferenceResult))
    await feed(fuzz, REPLY, batch, [consumer], good_reply)


# --- logging ---------------------------------------------------------------------------------

REJECTED_LINE = re.compile(r"(\S+) rejected \S+ as (\S+):")


async def test_rejections_are_logged_at_a_bounded_rate(fuzz: Harness) -> None:
    """400 bad requests (half nested 100,000 deep): a few lines, no traceback per record."""
    deep = b"[" * 100_000 + b"]" * 100_000
    burst = [FuzzRecord(None, deep if i % 2 else b"{nope", [], "burst") for i in range(400)]
    sources = await fuzz.produce(REQUESTS.name, burst)
    await wait_until(
        lambda: fuzz.committed_past(GROUPS[REQUESTS.name], sources),
        "the burst's commits",
        fuzz.alive,
    )
    elapsed = time.monotonic() - fuzz.started
    bound = 1 + elapsed / REJECTION_LOG_INTERVAL_S
    lines: Counter[tuple[str, str]] = Counter()
    for record in fuzz.logs.records:
        match = REJECTED_LINE.match(record.getMessage())
        if match:
            lines[(match[1], match[2])] += 1
            if not match[2].startswith("processing_error"):
                assert record.exc_info is None, f"a traceback for bad input: {record.getMessage()}"
        assert "RecursionError" not in record.getMessage()
    worker_log = fuzz.streams_text()
    for line in worker_log.splitlines():
        match = REJECTED_LINE.search(line)
        if match:
            lines[("worker " + match[1], match[2])] += 1
    assert "RecursionError" not in worker_log
    assert lines[("router", "not_json")] >= 1  # the burst itself was logged
    too_many = {kind: n for kind, n in lines.items() if n > bound}
    assert not too_many, f"more than {bound:.1f} lines per kind in {elapsed:.0f}s: {too_many}"


def fix_quality(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    return {**doc, "prompt_name": rid}


def as_quality_windows(batch: list[FuzzRecord]) -> list[FuzzRecord]:
    """Every record typed "QualityWindow", so each reaches the monitor's decoding (other
    event types on llm.metrics pass it by)."""
    return [
        FuzzRecord(
            r.key,
            r.value,
            [(k, v) for k, v in r.headers if k != EVENT_TYPE_HEADER]
            + [(EVENT_TYPE_HEADER, b"QualityWindow")],
            r.what,
        )
        for r in batch
    ]


async def good_quality_window(h: Harness) -> None:
    """A window whose refusal rate crosses the default ceiling: its alert gets stored."""
    name = f"good-{uuid.uuid4().hex[:12]}"
    start = utc_now().replace(microsecond=0)
    window = QualityWindow(
        window_start=start,
        window_end=start + timedelta(seconds=10),
        prompt_name=name,
        prompt_version=1,
        responses=100,
        errors=0,
        rate_totals={"refusal": 100, "error": 100},
        rate_hits={"refusal": 60, "error": 0},
    )
    key = group_key_text((name, 1, "", "", "")).encode()
    headers = [(EVENT_TYPE_HEADER, b"QualityWindow")]
    await (await h.producer.send(METRICS.name, window.to_bytes(), key, headers))
    await wait_until(
        lambda: asyncio.to_thread(lambda: bool(h.stored("alerts", "prompt_name", [name]))),
        "the good quality window's alert",
        h.alive,
    )


@FUZZ
@given(batch=fuzz_batch(tame(QualityWindow.model_json_schema()), fix_quality))
async def test_metrics_monitor(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    consumer = Consumer("metrics monitor", None, decodes(QualityWindow))
    await feed(fuzz, METRICS.name, as_quality_windows(batch), [consumer], good_quality_window)


# Packed features (one record per window group per sink batch), hostile ones among them.
@FUZZ
@given(batch=fuzz_batch(tame(ResponseFeaturesBatch.model_json_schema()), fix_packed))
async def test_metrics_packed_features(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    consumer = Consumer("metrics windows (packed)", None, decodes(ResponseFeaturesBatch))
    await feed(fuzz, FEATURES, batch, [consumer], good_features)


# Last: the metrics worker must survive it, and the tests above need it alive.
@FUZZ
@given(batch=fuzz_batch(tame(ResponseFeatures.model_json_schema()), fix_features))
async def test_metrics_features(fuzz: Harness, batch: list[FuzzRecord]) -> None:
    consumer = Consumer("metrics windows", None, decodes(ResponseFeatures))
    await feed(fuzz, FEATURES, batch, [consumer], good_features)
