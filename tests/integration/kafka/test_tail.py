"""TopicTail on the real broker: it says how far the topic is read, never ahead of it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest

from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from llmops.kafka.tail import TopicTail
from llmops.kafka.topics import ensure_topics
from schemas import utc_now
from schemas.topics import TopicSpec
from tests.integration.router.test_pools import eventually

pytestmark = pytest.mark.integration
# A fetch answer is stamped when the client handles it, a little after the broker built it.
SLACK_MS = 50


async def test_the_tail_reports_how_far_it_has_read(bootstrap: str) -> None:
    topic = f"tail-test-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(ensure_topics, bootstrap, [TopicSpec(topic, 3, "key", "test", ())])
    delivered: dict[bytes | None, datetime] = {}
    reports: list[tuple[datetime, datetime]] = []  # (read up to, when it was said)

    def take(record: Record) -> None:
        delivered[record.value] = utc_now()

    def report(read_at: datetime) -> None:
        reports.append((read_at, utc_now()))

    tail = TopicTail(bootstrap, topic, take, fetch_max_wait_ms=5, on_poll=report)
    runner = asyncio.create_task(tail.run())
    try:
        await asyncio.wait_for(tail.caught_up.wait(), 15)
        await eventually(lambda: len(reports) > 3, 10, "reports while idle")
        async with Producer(BusConfig(bootstrap)) as producer:
            await (await producer.send(topic, b"beat", key=b"k"))
            acked_at = utc_now()
        await eventually(lambda: b"beat" in delivered, 10, "the record")
        later = delivered[b"beat"] + timedelta(milliseconds=SLACK_MS)
        await eventually(lambda: reports[-1][0] > later, 10, "a report past the record")
    finally:
        tail.stop()
        await asyncio.wait_for(runner, 10)
    read_ats = [read_at for read_at, _ in reports]
    assert read_ats == sorted(read_ats)  # never moves back
    assert all(read_at <= said for read_at, said in reports)  # never ahead of the clock
    # Whoever hears "read up to X" may count on every record written before X: each report
    # past the record's acknowledgement came after the record was delivered.
    past = [
        said for read_at, said in reports if read_at > acked_at + timedelta(milliseconds=SLACK_MS)
    ]
    assert past and all(said >= delivered[b"beat"] for said in past)
