"""The router and a pool export llmops_* metrics on /metrics (before: none of their own).

On the real broker: the router and a fake-engine pool in this process, /metrics served as each
service serves it (llmops/telemetry/metrics.py), scraped over HTTP before and after some traffic.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.config import FakePool
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.local.procs import free_port
from llmops.sdk import LLMOpsClient
from llmops.telemetry.metrics import start_metrics_server
from schemas.topics import REQUESTS
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_router_and_pool_metrics_are_served(bootstrap: str) -> None:
    port = free_port()
    start_metrics_server(port)
    pool = FakePool(name=f"metrics-{uuid.uuid4().hex[:6]}", model="fake")
    before = await asyncio.to_thread(scrape, port)
    async with (
        running_platform(bootstrap, [pool]) as platform,
        LLMOpsClient(bootstrap, app="metrics") as client,
    ):
        results = [
            await client.generate([{"role": "user", "content": f"count me {i}"}], max_tokens=4)
            for i in range(3)
        ]
        async with Producer(BusConfig(bootstrap, client_id="metrics-bad")) as producer:
            await (await producer.send(REQUESTS.name, b"not json at all"))
        await eventually(lambda: platform.loops[0].dead_letters > 0, "the bad record taken")
        during = await asyncio.to_thread(scrape, port)
    after = await asyncio.to_thread(scrape, port)

    routed = {
        dict(labels)["reason"]: v
        for (name, labels), v in during.items()
        if name == "llmops_routed_total" and dict(labels).get("pool") == pool.name
    }
    assert sum(routed.values()) == 3 and set(routed) <= {"cold_start", "cheapest_healthy"}
    output = sum(r.usage.output_tokens for r in results)
    assert value(during, "llmops_tokens_total", pool=pool.name, direction="output") == output
    assert value(during, "llmops_tokens_total", pool=pool.name, direction="input") == sum(
        r.usage.input_tokens for r in results
    )
    for histogram in ("llmops_inference_request_seconds_count",):
        assert value(during, histogram, pool=pool.name, outcome="ok") == 3
    assert value(during, "llmops_time_to_first_token_seconds_count", pool=pool.name) == 3
    assert value(during, "llmops_time_per_output_token_seconds_count", pool=pool.name) == 3
    service = f"inference-{pool.name}"
    topic = f"llm.inference.{pool.name}"
    assert value(during, "llmops_records_consumed_total", service=service, topic=topic) == 3
    consumed = "llmops_records_consumed_total"
    router_took = value(during, consumed, service="router", topic=REQUESTS.name) - value(
        before, consumed, service="router", topic=REQUESTS.name
    )
    assert router_took >= 4  # three requests and the bad record (other tests' leftovers too)
    letters = "llmops_dead_letters_total"
    assert (
        value(during, letters, service="router", kind="not_json")
        - value(before, letters, service="router", kind="not_json")
        >= 1
    )
    assert ("llmops_queue_depth", frozenset({("pool", pool.name)})) in during
    assert value(after, "llmops_in_flight", service=service) == 0
    assert ("llmops_parked_requests", frozenset({("service", "router")})) in during
