"""The quality windows' embedding sample through the real store (ClickHouse server, migrated):
inserted as the worker's writer inserts rows (Arrow), read back by the monitor's reference
query, it is the same sample (float32 values, hashes), and the reference built from the
stored windows is the one built from the windows in memory. And the real worker with the
real embedding tier stores, per segment, the bottom-32 of the embeddings it stores with the
responses."""

# ruff: noqa: F811  (the fixtures of test_worker, imported by name, are parameters here)
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer

from llmops.clickhouse.client import connect, insert_rows
from llmops.monitoring_config import ReferenceConfig
from schemas import InferenceResult, QualityWindow, Timings, Usage
from streams import sketches
from streams.features import ResponseFeatures
from streams.monitoring.reference import merge_reference, reference_query, window_from_row
from streams.quality import WindowQuality
from streams.rows import QUALITY_WINDOW_COLUMNS, QUALITY_WINDOWS_TABLE, quality_window_row
from tests.integration.streams.test_worker import (  # noqa: F401  (fixtures)
    Tables,
    Worker,
    own_bootstrap,
    run_id,
    send_all,
    tables,
    wait_for,
)

pytestmark = pytest.mark.integration

GROUP = ("embed", 2, "a", "cpu", "m")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def windows_of(n_windows: int) -> list[QualityWindow]:
    rng = np.random.default_rng(5)
    out = []
    for w in range(n_windows):
        start = T0 + timedelta(minutes=w)
        quality = WindowQuality()
        for i in range(60):
            quality.add(
                ResponseFeatures.model_validate(
                    {
                        "request_id": f"e{w}-{i}",
                        "ts": start + timedelta(seconds=1),
                        "prompt_name": GROUP[0],
                        "prompt_version": GROUP[1],
                        "variant": GROUP[2],
                        "pool": GROUP[3],
                        "model": GROUP[4],
                        "finish_reason": "stop",
                        "latency_ms": 100.0,
                        "embedding": (rng.normal(0.0, 1.0, 16) / 7).tolist(),
                        "segments": {"locale": "de" if i % 3 else "en"},
                    }
                )
            )
        out += quality.windows(int(start.timestamp() * 1000), 60_000, GROUP)
    return out


def test_the_embedding_sample_round_trips_through_the_store(database: str) -> None:
    windows = windows_of(4)
    assert all(len(w.embedding_sample) >= 20 for w in windows)
    client = connect(database)
    try:
        insert_rows(
            client, QUALITY_WINDOWS_TABLE, [quality_window_row(w) for w in windows],
            QUALITY_WINDOW_COLUMNS,
        )  # fmt: skip
        segments = sorted({w.segment for w in windows})
        sql, parameters = reference_query(
            GROUP, segments, ReferenceConfig(mode="rolling", rolling_windows=10),
            T0 + timedelta(hours=1),
        )  # fmt: skip
        rows = list(client.query(sql, parameters=parameters).named_results())
    finally:
        client.close()
    stored = {(w.window_start, w.segment): w for w in map(window_from_row, rows)}
    assert len(stored) == len(windows)
    for window in windows:
        back = stored[(window.window_start, window.segment)]
        assert back.embedding_sample_hashes == window.embedding_sample_hashes
        assert back.embedding_sample == window.embedding_sample  # float32 values: exact
    for segment in segments:
        mine = [w for w in windows if w.segment == segment]
        theirs = [stored[(w.window_start, segment)] for w in mine]
        expected = np.asarray(merge_reference(mine, "r").embedding_sample)
        assert len(expected) == min(256, sum(len(w.embedding_sample) for w in mine))
        assert np.array_equal(np.asarray(merge_reference(theirs, "r").embedding_sample), expected)


EMBEDDING_ENV = {
    "LLMOPS_DETECTORS": json.dumps(["lengths", "refusal_patterns", "minilm_embeddings"]),
    "LLMOPS_EMBEDDING_SAMPLE_RATE": "1.0",
    "LLMOPS_SEGMENT_ATTRIBUTES": json.dumps(["locale"]),
}
TOPICS = ("the weather", "a recipe", "the tower", "a train", "taxes", "a poem", "the sea")


def test_the_worker_stores_the_bottom_k_of_the_real_embeddings(
    own_bootstrap: str,
    database: str,
    tables: Tables,
    run_id: str,
    tmp_path: Path,
) -> None:
    """The real worker with the real embedding tier (all-MiniLM-L6-v2), on a window closed an
    hour ago (so it is seeded from the stored responses too): its quality row's embedding
    sample is exactly the bottom-32, by request-id hash, of the embeddings stored with the
    responses, for the whole group and for each segment. A broker of its own: on the shared
    one the new consumer group would first embed every earlier test's responses."""
    n = 48
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    results = [
        InferenceResult(
            request_id=f"{run_id}-{i}",
            ts=long_ago + timedelta(milliseconds=10 * i),
            text=f"Here is answer {i} about {TOPICS[i % len(TOPICS)]}.",
            finish_reason="stop",
            usage=Usage(input_tokens=5, output_tokens=8),
            timings=Timings(ttft_ms=5.0, total_ms=50.0),
            pool="cpu",
            model="tiny",
            prompt_name=run_id,
            prompt_version=1,
            attributes={"locale": "de" if i % 3 else "en"},
        )
        for i in range(n)
    ]
    worker = Worker(own_bootstrap, database, tmp_path, f"streams-{run_id}", EMBEDDING_ENV)
    producer = KafkaProducer(bootstrap_servers=own_bootstrap, acks="all", linger_ms=5)

    def sampled_rows() -> dict[str, dict[str, Any]]:
        rows = tables.client.query(
            "SELECT segment, embedded, embedding_sample, embedding_sample_hashes"
            " FROM quality_windows FINAL WHERE prompt_name = {p:String}",
            parameters={"p": run_id},
        ).named_results()
        return {row["segment"]: row for row in rows}

    try:
        send_all(
            producer, "llm.responses", [(r.request_id.encode(), r.to_bytes()) for r in results]
        )
        wait_for(lambda: sampled_rows().get("", {}).get("embedded") == n, "the quality row", worker)
        stored = {
            row["request_id"]: row["embedding"]
            for row in tables.client.query(
                "SELECT request_id, embedding FROM responses FINAL"
                " WHERE startsWith(request_id, {p:String})",
                parameters={"p": run_id},
            ).named_results()
        }
        found = sampled_rows()
    finally:
        code = worker.stop()
        producer.close()
    assert code == 0, worker.log()[-3000:]
    assert len(stored) == n and all(len(v) == 384 for v in stored.values())
    members = {
        "": list(stored),
        "locale=de": [f"{run_id}-{i}" for i in range(n) if i % 3],
        "locale=en": [f"{run_id}-{i}" for i in range(n) if not i % 3],
    }
    assert set(found) == set(members)
    for segment, ids in members.items():
        expected = sorted((sketches.stable_hash(rid), list(stored[rid])) for rid in ids)[:32]
        row = found[segment]
        assert row["embedded"] == len(ids)
        assert list(row["embedding_sample_hashes"]) == [h for h, _ in expected]
        assert [list(v) for v in row["embedding_sample"]] == [v for _, v in expected]
