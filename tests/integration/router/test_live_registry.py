"""The router's live registry on the real broker: replicas build their prompt set from
llm.prompts at start (over the seed), follow a label move with no restart (the time each
replica took is printed as data, never asserted), serve the new version, apply the prompt's
sampling defaults, and dead-letter forged or malformed registry records without a crash.
Requests naming an unknown label or version, or a variable of the wrong type, get an error
reply and a dead letter."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer

from llmops.config import FakePool, Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.prompts.registry import prompt_set_from_data
from llmops.sdk import LLMOpsClient, LLMOpsError
from schemas import InferenceResult, LabelMove, PromptVersion
from schemas.prompts import label_key, version_key
from schemas.topics import PROMPTS
from services.inference.engines.fake import FakeEngine
from services.inference.service import build_worker
from services.router.service import Router, RouterLoop, build_router
from tests.integration.kafka.test_dead_letters import read_dead_letters
from tests.integration.platform import PROMPTS as SEED
from tests.kafka_kit import start_at_the_end
from tests.signing_kit import signed_headers

pytestmark = pytest.mark.integration
WAIT_S = 30.0  # a deadline against a hung test, never a measurement


@dataclass
class Replicas:
    settings: Settings
    routers: list[Router]
    loops: list[RouterLoop]
    publisher: Producer


@contextlib.asynccontextmanager
async def replicas(bootstrap: str, count: int) -> AsyncIterator[Replicas]:
    """`count` router replicas in one group (each its own producer and seed copy) and one
    fake pool, in process."""
    suffix = uuid.uuid4().hex[:6]
    pool = FakePool(name=f"fake-{suffix}", model="fake")
    settings = Settings(kafka_bootstrap_servers=bootstrap, pools=[pool])
    await asyncio.to_thread(ensure_topics, bootstrap, platform_topics([pool.name]))
    group = f"llmops-router-{suffix}"
    await start_at_the_end(bootstrap, group)
    producers = [
        Producer(BusConfig.from_settings(settings, client_id=f"replica-{i}"))
        for i in range(count + 2)
    ]
    for producer in producers:
        await producer.start()
    routers, loops = [], []
    for producer in producers[:count]:
        router, loop = build_router(settings, prompt_set_from_data(SEED), producer, group_id=group)
        routers.append(router)
        loops.append(loop)
    engine = FakeEngine(model="fake")
    await engine.start()
    _, pool_loop = build_worker(settings, pool, engine, producers[count])
    tasks = [asyncio.create_task(loop.run()) for loop in [*loops, pool_loop]]
    try:
        yield Replicas(settings, routers, loops, producers[count + 1])
    finally:
        for loop in [*loops, pool_loop]:
            loop.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.stop()
        for producer in producers:
            await producer.stop()


def version(name: str, number: int, text: str) -> PromptVersion:
    return PromptVersion.model_validate(
        {
            "name": name,
            "version": number,
            "variables": {"who": {"type": "string"}, "n": {"type": "int", "default": 1}},
            "params": {"max_tokens": 7, "temperature": 0.5},
            "messages": [{"role": "user", "content": f"{text} {{{{ who }}}} x{{{{ n + 1 }}}}"}],
        }
    )


async def publish(producer: Producer, *events: PromptVersion | LabelMove) -> None:
    acks = []
    for event in events:
        key = (
            version_key(event.name, event.version)
            if isinstance(event, PromptVersion)
            else label_key(event.name, event.label)
        )
        acks.append(await producer.send_event(PROMPTS.name, event, key=key, sign=True))
    await asyncio.gather(*acks)


async def wait_until(check: object, what: str) -> float:
    """Seconds until `check()` held (polled every 5 ms)."""
    assert callable(check)
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > WAIT_S:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def wait_for_assignments(loops: list[RouterLoop]) -> None:
    """Every replica owns partitions of llm.requests (the group settled)."""
    await wait_until(
        lambda: all(loop.consumer is not None and loop.consumer.assignment() for loop in loops),
        "every replica to own partitions",
    )


async def generate(client: LLMOpsClient, name: str, user: str, **kw: object) -> InferenceResult:
    return await client.generate(
        prompt=name, label="live", variables={"who": user}, user_id=user, timeout_s=30, **kw
    )


async def test_replicas_build_from_the_topic_and_follow_a_label_move(bootstrap: str) -> None:
    name = f"live-{uuid.uuid4().hex[:8]}"
    async with replicas(bootstrap, 2) as platform:
        # Published before the replicas read the topic: built at start.
        await publish(
            platform.publisher,
            version(name, 1, "first"),
            version(name, 2, "second"),
            LabelMove(name=name, label="live", version=1, actor="test"),
        )
        await wait_until(
            lambda: all(r.registry_live for r in platform.routers), "the registry read"
        )
        for router in platform.routers:
            await wait_until(
                lambda router=router: router.registry.prompts.label_version(name, "live") == 1,
                "the label at start",
            )
        await wait_for_assignments(platform.loops)
        async with LLMOpsClient(bootstrap, app="live-test") as client:
            before = await asyncio.gather(*(generate(client, name, f"u{i}") for i in range(8)))
            assert {r.prompt_version for r in before} == {1}
            # The prompt's params are the request's defaults: 7 tokens, not the default 128.
            assert {r.usage.output_tokens for r in before} == {7}

            await publish(
                platform.publisher,
                LabelMove(name=name, label="live", version=2, previous=1, actor="test"),
            )
            took = await asyncio.gather(
                *(
                    wait_until(
                        lambda router=router: (
                            router.registry.prompts.label_version(name, "live") == 2
                        ),
                        "the move on every replica",
                    )
                    for router in platform.routers
                )
            )
            print(f"label move seen by each replica after {[round(t * 1000) for t in took]} ms")
            routed_before = [r.routed for r in platform.routers]
            after = await asyncio.gather(*(generate(client, name, f"user-{i}") for i in range(40)))
        assert {r.prompt_version for r in after} == {2}
        # Both replicas served some of them: the second one follows too.
        assert all(r.routed > n for r, n in zip(platform.routers, routed_before, strict=True))


async def test_forged_and_malformed_registry_records_are_dead_lettered(bootstrap: str) -> None:
    name = f"forged-{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    async with replicas(bootstrap, 1) as platform:
        router = platform.routers[0]
        await publish(
            platform.publisher,
            version(name, 1, "first"),
            version(name, 2, "second"),
            LabelMove(name=name, label="live", version=1, actor="test"),
        )
        await wait_until(lambda: router.registry.prompts.label_version(name, "live") == 1, "v1")
        await wait_until(lambda: router.registry_live, "the registry read")
        forged = LabelMove(name=name, label="live", version=2, actor="mallory", reason=marker)
        raw = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await raw.start()
        try:
            key = label_key(name, "live").encode()
            value = forged.to_bytes()
            unsigned = signed_headers(PROMPTS.name, key, value, "LabelMove")[:-1]
            await raw.send_and_wait(PROMPTS.name, value, key=key, headers=unsigned)
            await raw.send_and_wait(PROMPTS.name, f"{marker} not json".encode(), key=key)
            # A version claiming content it does not have.
            tampered = version(name, 3, "third").to_bytes().replace(b"third", marker.encode())
            vkey = version_key(name, 3).encode()
            headers = signed_headers(PROMPTS.name, vkey, tampered, "PromptVersion")
            await raw.send_and_wait(PROMPTS.name, tampered, key=vkey, headers=headers)
        finally:
            await raw.stop()
        letters = await read_dead_letters(bootstrap, marker, expected=3)
        # Garbage without an event type is no registry contract: schema_invalid, like the
        # version whose content hash does not match.
        assert sorted(letter.kind for letter in letters) == [
            "schema_invalid",
            "schema_invalid",
            "unsigned",
        ]
        assert {letter.service for letter in letters} == {"router-registry"}
        # Nothing changed, and the router still serves.
        assert router.registry.prompts.label_version(name, "live") == 1
        assert 3 not in router.registry.prompts.versions[name]
        async with LLMOpsClient(bootstrap, app="forged-test") as client:
            result = await generate(client, name, "u1")
        assert result.prompt_version == 1


async def test_unresolvable_requests_get_an_error_reply_and_a_dead_letter(
    bootstrap: str,
) -> None:
    name = f"errors-{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    async with replicas(bootstrap, 1) as platform:
        await publish(
            platform.publisher,
            version(name, 1, "first"),
            LabelMove(name=name, label="live", version=1, actor="test"),
        )
        router = platform.routers[0]
        await wait_until(lambda: router.registry.prompts.label_version(name, "live") == 1, "v1")
        async with LLMOpsClient(bootstrap, app="errors-test") as client:

            async def error_of(**kw: object) -> InferenceResult:
                with pytest.raises(LLMOpsError) as info:
                    await client.generate(prompt=name, timeout_s=30, user_id=marker, **kw)
                return info.value.result

            no_label, no_version, wrong_type, missing = await asyncio.gather(
                error_of(label="nope", variables={"who": marker}),
                error_of(version=9, variables={"who": marker}),
                error_of(label="live", variables={"who": marker, "n": "many"}),
                error_of(label="live", variables={"other": marker}),
            )
    assert no_label.error is not None and "no version labelled 'nope'" in no_label.error.message
    assert no_version.error is not None and "has no version 9" in no_version.error.message
    assert wrong_type.error is not None
    assert "'n' must be of type int, got 'many'" in wrong_type.error.message
    assert missing.error is not None and "missing variable(s) who" in missing.error.message
    letters = await read_dead_letters(bootstrap, marker, expected=4)
    assert sorted(letter.kind for letter in letters) == [
        "missing_variable",
        "missing_variable",
        "unknown_prompt",
        "unknown_prompt",
    ]
