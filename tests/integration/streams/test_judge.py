"""The model-graded check on the real platform: the metrics worker (`python -m streams`) sends
judge requests through the real router to a fake-engine pool, over a broker of the test's own
(Tansu), and stores the verdicts in the real ClickHouse engine (chDB behind the store).

The fake engine's text is no verdict: every judgement says "unparsed", which is what it must
say (the parser is held to real-looking verdicts in tests/unit/streams/judge/).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from llmops.config import FakePool
from schemas import ChatMessage, InferenceResult, PromptRequest, SamplingParams
from schemas.topics import REQUESTS, RESPONSES, response_features_topic
from streams.features import ResponseFeaturesBatch
from streams.judge.requests import JUDGE_APP, JUDGE_CHECK, JUDGED_REQUEST, judge_request_id
from tests.integration.platform import running_platform
from tests.integration.streams.test_worker import (  # noqa: F401  (fixtures)
    Tables,
    Worker,
    committed,
    own_bootstrap,
    run_id,
    wait_async,
)

pytestmark = pytest.mark.integration

N = 6
READ_S = 60.0


def read_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record of `topic` up to each partition's fetch
    high watermark (correct on Tansu, unlike ListOffsets), read without joining a group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    found: list[tuple[int, int, bytes]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + READ_S
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found.extend((r.partition, r.offset, r.value or b"") for r in records)
            marks = [(consumer.highwater(tp), consumer.position(tp)) for tp in partitions]
            if all(mark is not None and at >= mark for mark, at in marks):
                return found
        raise AssertionError(f"could not read {topic} to its end")
    finally:
        consumer.close()


async def test_sampled_app_responses_are_judged_once_through_the_router(
    own_bootstrap: str,  # noqa: F811
    database: str,
    run_id: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    bootstrap, app_id = own_bootstrap, f"streams-{run_id}"
    pool = FakePool(name=f"judge-{run_id}", model="fake")
    tables = Tables(database)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    app_ids = [f"{run_id}-{i}" for i in range(N)]
    worker = Worker(
        bootstrap,
        database,
        tmp_path,
        app_id,
        env={
            "LLMOPS_JUDGE_MODEL": pool.model,
            "LLMOPS_JUDGE_SAMPLE_RATE": "1.0",
            "LLMOPS_JUDGE_CHECKS": '["rubric"]',
        },
    )
    try:
        async with running_platform(bootstrap, pools=[pool]):
            for request_id in app_ids:
                request = PromptRequest(
                    request_id=request_id,
                    app="shop",
                    tenant="acme",
                    model=pool.model,
                    messages=[ChatMessage(role="user", content=f"Tell me about {request_id}")],
                    sampling=SamplingParams(max_tokens=8),
                )
                producer.send(REQUESTS.name, key=request_id.encode(), value=request.to_bytes())
            producer.flush()

            def judged() -> int:
                return int(tables.scalar("SELECT count() FROM judgements FINAL"))

            await wait_async(lambda: judged() >= N, f"{N} judgements", worker)

            # Quiet: every result on llm.responses (N answers, N verdicts) is committed by the
            # worker, so whatever it would ever publish for them is on the broker already.
            results = read_all(bootstrap, RESPONSES.name)
            assert len(results) == 2 * N
            last: dict[int, int] = defaultdict(lambda: -1)
            for partition, offset, _ in results:
                last[partition] = max(last[partition], offset)

            def all_committed() -> bool:
                return all(
                    committed(bootstrap, app_id, RESPONSES.name, p) > offset
                    for p, offset in last.items()
                )

            await wait_async(all_committed, "the worker past every result", worker)

        # N app requests and exactly N judge requests: no verdict was judged.
        requests = [
            PromptRequest.model_validate_json(v) for _, _, v in read_all(bootstrap, REQUESTS.name)
        ]
        judge_requests = [r for r in requests if r.app == JUDGE_APP]
        assert sorted(r.request_id for r in requests if r.app != JUDGE_APP) == sorted(app_ids)
        assert sorted(
            (r.attributes[JUDGED_REQUEST], r.request_id) for r in judge_requests
        ) == sorted((a, judge_request_id(a, "rubric")) for a in app_ids)
        assert all(
            r.model == pool.model and r.tenant == "acme" and r.attributes[JUDGE_CHECK] == "rubric"
            for r in judge_requests
        )
        # Every result was served by the pool: N answers and N verdicts.
        served = [InferenceResult.model_validate_json(v) for _, _, v in results]
        assert sorted(r.app for r in served) == sorted(["shop"] * N + [JUDGE_APP] * N)

        # One judgement per app response, joined by request id; none of a judgement.
        rows = tables.client.query(
            "SELECT j.request_id, j.check, j.judge_request_id, j.judge_model, j.judge_pool, "
            "j.verdict, j.score, j.tenant, r.app "
            "FROM judgements AS j FINAL "
            "INNER JOIN (SELECT request_id, app FROM responses FINAL) AS r "
            "ON r.request_id = j.request_id ORDER BY j.request_id"
        ).result_rows
        assert [tuple(row) for row in rows] == [
            (
                a,
                "rubric",
                judge_request_id(a, "rubric"),
                pool.model,
                pool.name,
                "unparsed",
                0,
                "acme",
                "shop",
            )
            for a in sorted(app_ids)
        ]
        assert tables.scalar("SELECT count() FROM judgements FINAL") == N

        # The verdicts are stored as responses, flagged, with no detector signal but their own.
        flagged = tables.client.query(
            "SELECT request_id, mapKeys(signals), attributes['llmops.judge_of'] "
            "FROM responses FINAL WHERE app = {app:String} ORDER BY request_id",
            parameters={"app": JUDGE_APP},
        ).result_rows
        assert len(flagged) == N
        assert all(list(keys) == ["judge_parsed"] for _, keys, _ in flagged)
        assert sorted(of for *_, of in flagged) == sorted(app_ids)
        # The app responses carry the cheap tier's signals, as ever.
        assert (
            tables.scalar(
                "SELECT countIf(mapContains(signals, 'refusal')) FROM responses FINAL "
                "WHERE app = 'shop'"
            )
            == N
        )

        # Only the app responses reach the windows: N features, N requests in the windows.
        features_topic = response_features_topic(app_id).name
        features = [
            member.to_bytes()
            for _, _, v in read_all(bootstrap, features_topic)
            for member in ResponseFeaturesBatch.from_bytes(v).features
        ]
        assert len(features) == N
        assert all(any(a.encode() in v for a in app_ids) for v in features)
        await wait_async(
            lambda: int(tables.scalar("SELECT sum(requests) FROM metric_windows FINAL")) >= N,
            "the windows",
            worker,
        )
        assert tables.scalar("SELECT sum(requests) FROM metric_windows FINAL") == N
        # Judge requests are stored as requests too, filterable by their app.
        assert (
            tables.scalar(
                "SELECT count() FROM requests FINAL WHERE app = {app:String}", app=JUDGE_APP
            )
            == N
        )
    finally:
        code = worker.stop()
        producer.close()
        tables.client.close()
    assert code == 0, worker.log()[-3000:]
