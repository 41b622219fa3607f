"""One trace across Kafka hops, as the platform makes it: three "services" (each its own tracer
provider and resource) pass W3C context in record headers over the real broker, export over
OTLP/HTTP to the trace receiver, and the stored trace in ClickHouse is one connected tree."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from llmops.cli.traces import TRACE_QUERY, rows_as_dicts, trace_tree
from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.local.otlp_receiver.launcher import start_traces, stop_traces
from llmops.local.procs import free_port
from llmops.telemetry.setup import build_resource
from llmops.telemetry.spans import consumer_span, producer_headers, producer_span

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver_db(store_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = f"{store_url}/t_{uuid.uuid4().hex[:12]}"
    client = ensure_database(url)
    apply_migrations(client)
    client.close()
    port = free_port()
    proc = start_traces("127.0.0.1", port, url, tmp_path / "traces.log")
    yield f"http://127.0.0.1:{port}", url
    stop_traces(proc)


def service_provider(name: str, receiver: str) -> TracerProvider:
    provider = TracerProvider(resource=build_resource(name), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{receiver}/v1/traces")))
    return provider


def consume_one(bootstrap: str, topic: str) -> Any:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        for _ in range(100):
            for records in consumer.poll(timeout_ms=200).values():
                return records[0]
        raise AssertionError(f"no record arrived on {topic}")
    finally:
        consumer.close()


def test_one_trace_across_two_kafka_hops(bootstrap: str, receiver_db: tuple[str, str]) -> None:
    receiver, db_url = receiver_db
    requests, routed = f"t.requests.{uuid.uuid4().hex[:8]}", f"t.routed.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, 1, 1) for t in (requests, routed)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    app, router, inference = (
        service_provider(n, receiver) for n in ("it-app", "it-router", "it-inference")
    )
    try:
        # app: publish a request inside a PRODUCER span
        with producer_span(app.get_tracer("app"), requests, key="user-1") as sent:
            producer.send(requests, b"{}", key=b"user-1", headers=producer_headers()).get(30)
        trace_id = f"{sent.get_span_context().trace_id:032x}"

        # router: process it as the child of the app's span, publish onward
        record = consume_one(bootstrap, requests)
        with consumer_span(
            router.get_tracer("router"),
            f"process {requests}",
            record.headers,
            requests,
            record.partition,
            record.offset,
            key=record.key,
            consumer_group="router",
        ):
            producer.send(routed, b"{}", headers=producer_headers()).get(30)

        # inference: process the routed record
        record = consume_one(bootstrap, routed)
        with consumer_span(
            inference.get_tracer("inference"),
            f"process {routed}",
            record.headers,
            routed,
            record.partition,
            record.offset,
        ):
            pass
    finally:
        producer.close()
        for provider in (app, router, inference):
            assert provider.force_flush(30_000)
            provider.shutdown()

    client = connect(db_url)
    try:
        result = client.query(TRACE_QUERY, parameters={"trace_id": trace_id})
    finally:
        client.close()
    tree = trace_tree(rows_as_dicts(result.column_names, result.result_rows))
    assert tree.is_connected(), tree.render()
    chain = [(node.service, node.kind) for _, node in tree.walk()]
    assert chain == [
        ("it-app", "Producer"),
        ("it-router", "Consumer"),
        ("it-inference", "Consumer"),
    ]
    assert [depth for depth, _ in tree.walk()] == [0, 1, 2]
