"""The quality windows' embedding sample through the real store (ClickHouse server, migrated):
inserted as the worker's writer inserts rows (Arrow), read back by the monitor's reference
query, it is the same sample (float32 values, hashes), and the reference built from the
stored windows is the one built from the windows in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from llmops.clickhouse.client import connect, insert_rows
from llmops.monitoring_config import ReferenceConfig
from schemas import QualityWindow
from streams.features import ResponseFeatures
from streams.monitoring.reference import merge_reference, reference_query, window_from_row
from streams.quality import WindowQuality
from streams.rows import QUALITY_WINDOW_COLUMNS, QUALITY_WINDOWS_TABLE, quality_window_row

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
