# ruff: noqa: F811  (the fixtures of test_worker, imported by name, are parameters here)
"""Quality windows on the real worker (`python -m streams`), the real broker (Tansu) and the
real ClickHouse engine (chDB behind the store's HTTP interface): responses with planted
refusals, leaked emails, invalid JSON and errors, split by declared segments, come out as
exact `quality_windows` rows and QualityWindow records; killed mid-window (kill -9) and
restarted, the worker stores the same final numbers.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from schemas import ErrorInfo, InferenceResult, QualityWindow, Timings, Usage
from schemas.topics import EVENT_TYPE_HEADER, METRICS
from streams import sketches
from streams.quality import OTHER
from tests.integration.streams.test_worker import (  # noqa: F401
    WAIT_S,
    Tables,
    Worker,
    producer,
    run_id,
    send_all,
    tables,
    wait_for,
)

LOCALES = ("de", "en", "fr", "it")
MAX_VALUES = 3  # LLMOPS_SEGMENT_MAX_VALUES: one of the four locales is "(other)"
ENV = {
    "LLMOPS_SEGMENT_ATTRIBUTES": json.dumps(["locale", "plan"]),
    "LLMOPS_SEGMENT_MAX_VALUES": str(MAX_VALUES),
}
REFUSAL = "I'm sorry, but I can't help with that."
EMAIL = "Write to ada@example.com."


def failed(i: int) -> bool:
    return i % 10 == 9


def kind(i: int) -> int:
    """0 refusal, 1 email, 2 valid JSON asked for, 3 invalid JSON asked for, 4 refusal and
    email, 5 a plain answer."""
    return i % 6


def planted(prefix: str, i: int, ts: datetime) -> InferenceResult:
    texts = [REFUSAL, f"Sure. {EMAIL}", '{"answer": 42}', "answer: 42", f"{REFUSAL} {EMAIL}"]
    attributes = {"locale": LOCALES[i % 4], "user": f"u{i}"}  # "user" is not declared
    if i % 2:
        attributes["plan"] = "pro"
    return InferenceResult(
        request_id=f"{prefix}-{i}",
        ts=ts,
        text="" if failed(i) else [*texts, "The answer is forty two."][kind(i)],
        finish_reason="error" if failed(i) else "stop",
        error=ErrorInfo(kind="engine_error", message="boom") if failed(i) else None,
        usage=Usage(input_tokens=10, output_tokens=0 if failed(i) else 3),
        timings=Timings(queue_ms=1.0, ttft_ms=5.0 + i, total_ms=50.0 + i),
        pool="cpu",
        model="tiny",
        prompt_name=prefix,
        prompt_version=1,
        variant="a",
        response_format="json" if kind(i) in (2, 3) else "text",
        attributes=attributes,
    )


def segments_of(i: int) -> list[str]:
    kept = sorted(LOCALES, key=lambda v: sketches.stable_hash(f"locale={v}"))[:MAX_VALUES]
    locale = LOCALES[i % 4]
    out = ["", f"locale={locale if locale in kept else OTHER}"]
    if i % 2:
        out.append("plan=pro")
    return out


def expected(indices: Iterable[int]) -> dict[str, dict[str, Any]]:
    """segment -> responses, errors, {rate: (total, hits)}, from the planted kinds alone."""
    out: dict[str, dict[str, Any]] = {}
    for i in indices:
        answer = not failed(i)
        flags = {
            "error": (True, failed(i)),
            "pii_input": (True, False),
            "refusal": (answer, answer and kind(i) in (0, 4)),
            "pii_output": (answer, answer and kind(i) in (1, 4)),
            "pii_output.EMAIL": (answer, answer and kind(i) in (1, 4)),
            "toxic": (answer, False),
            # any of PII leak, toxic, unsupported (no context here: no grounding signal)
            "safety_flag": (answer, answer and kind(i) in (1, 4)),
            "json_invalid": (answer and kind(i) in (2, 3), answer and kind(i) == 3),
        }
        for segment in segments_of(i):
            figures = out.setdefault(segment, {"responses": 0, "errors": 0, "rates": {}})
            figures["responses"] += 1
            figures["errors"] += failed(i)
            for rate, (counted, hit) in flags.items():
                if counted:
                    total, hits = figures["rates"].get(rate, (0, 0))
                    figures["rates"][rate] = (total + 1, hits + hit)
    return out


def stored(store: Tables, prompt_name: str) -> dict[str, dict[str, Any]]:
    """segment -> the same figures, summed over the prompt's stored quality rows."""
    rows = store.client.query(
        "SELECT segment, responses, errors, rate_totals, rate_hits, rate_low, rate_high,"
        " quantiles, sketches, sample, window_start FROM quality_windows FINAL"
        " WHERE prompt_name = {p:String} ORDER BY window_start, segment",
        parameters={"p": prompt_name},
    ).named_results()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        figures = out.setdefault(row["segment"], {"responses": 0, "errors": 0, "rates": {}})
        figures["responses"] += row["responses"]
        figures["errors"] += row["errors"]
        assert row["rate_totals"].keys() == row["rate_hits"].keys() == row["rate_low"].keys()
        for rate, total in row["rate_totals"].items():
            before = figures["rates"].get(rate, (0, 0))
            figures["rates"][rate] = (before[0] + total, before[1] + row["rate_hits"][rate])
            assert 0.0 <= row["rate_low"][rate] <= row["rate_high"][rate] <= 1.0
        if row["responses"] > row["errors"]:
            assert len(row["quantiles"]["latency_ms"]) == 4
            assert sketches.decode_sketch(row["sketches"]["latency_ms"]).n == len(
                row["sample"]["latency_ms"]
            )
    return out


def wait_for_figures(
    store: Tables, prompt_name: str, want: dict[str, dict[str, Any]], worker: Worker
) -> None:
    """Until the stored figures are `want`; on a timeout, the difference."""
    try:
        wait_for(lambda: stored(store, prompt_name) == want, "the quality rows", worker)
    except AssertionError:
        assert stored(store, prompt_name) == want, worker.log()[-3000:]
        raise


def quality_records(
    bootstrap: str, prompt_name: str, timeout: float = WAIT_S
) -> list[tuple[bytes, QualityWindow]]:
    """(key, event type header, QualityWindow) of the prompt's records on llm.metrics."""
    consumer = KafkaConsumer(
        METRICS.name,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        enable_auto_commit=False,
    )
    found: list[tuple[bytes, QualityWindow]] = []
    try:
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline and idle < 6:
            polled = consumer.poll(timeout_ms=500)
            idle = 0 if polled else idle + (1 if found else 0)
            for records in polled.values():
                for record in records:
                    headers = dict(record.headers or [])
                    if headers.get(EVENT_TYPE_HEADER) != b"QualityWindow":
                        continue
                    window = QualityWindow.from_bytes(record.value)
                    if window.prompt_name == prompt_name:
                        found.append((record.key, window))
        return found
    finally:
        consumer.close()


def test_planted_signals_come_out_as_exact_quality_rows_per_segment(
    bootstrap: str,
    database: str,
    tables: Tables,
    producer: KafkaProducer,
    run_id: str,
    tmp_path: Path,
) -> None:
    """One window (closed an hour ago, so it is also seeded from the stored responses: their
    signals and segments come back from the table): N responses in, exact figures out."""
    n = 60
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    results = [planted(run_id, i, long_ago + timedelta(milliseconds=10 * i)) for i in range(n)]
    want = expected(range(n))
    worker = Worker(bootstrap, database, tmp_path, f"streams-{run_id}", ENV)
    try:
        send_all(
            producer, "llm.responses", [(r.request_id.encode(), r.to_bytes()) for r in results]
        )
        wait_for(lambda: tables.window_sum(run_id) == n, "the metric window", worker)
        wait_for_figures(tables, run_id, want, worker)
        records = quality_records(bootstrap, run_id)
    finally:
        code = worker.stop()
    assert code == 0, worker.log()[-3000:]
    assert "Traceback" not in worker.log()
    kept = sorted(LOCALES, key=lambda v: sketches.stable_hash(f"locale={v}"))[:MAX_VALUES]
    assert set(want) == {"", "plan=pro", f"locale={OTHER}", *(f"locale={v}" for v in kept)}
    # Published on llm.metrics, keyed by the group; the latest of each segment is the row.
    latest: dict[str, QualityWindow] = {}
    for key, window in records:
        assert key == f"{run_id}|1|a|cpu|tiny".encode()
        latest[window.segment] = window
    assert {s: (w.responses, w.errors) for s, w in latest.items()} == {
        s: (f["responses"], f["errors"]) for s, f in want.items()
    }
    whole = latest[""]
    assert whole.categories["finish_reason"] == {"error": n // 10, "stop": n - n // 10}
    assert whole.categories["error_kind"] == {"engine_error": n // 10}
    assert all(not math.isnan(q) for qs in whole.quantiles.values() for q in qs)


def test_a_worker_killed_mid_window_and_restarted_stores_the_same_final_numbers(
    bootstrap: str,
    database: str,
    tables: Tables,
    producer: KafkaProducer,
    run_id: str,
    tmp_path: Path,
) -> None:
    """Half the responses of a window that is still open, kill -9 (nothing flushed, nothing
    acked), a restart in the same group, the other half: the window's rows count every
    response once, exactly as if nothing had happened."""
    app_id = f"streams-{run_id}"
    env = {**ENV, "LLMOPS_METRICS_WINDOW_S": "10"}
    # A window that opens 10-20 s from now: it cannot close before the kill below.
    start = (math.floor(time.time() / 10) + 2) * 10
    at = datetime.fromtimestamp(start, tz=UTC)
    n = 40
    results = [planted(run_id, i, at + timedelta(milliseconds=100 * i)) for i in range(n)]
    first, second = results[:24], results[24:]

    worker = Worker(bootstrap, database, tmp_path, app_id, env)
    try:
        send_all(producer, "llm.responses", [(r.request_id.encode(), r.to_bytes()) for r in first])
        wait_for(lambda: tables.count("responses", run_id) == len(first), "the first half", worker)
    finally:
        worker.proc.kill()  # kill -9: no flush, no commit, no goodbye
        worker.proc.wait()

    send_all(producer, "llm.responses", [(r.request_id.encode(), r.to_bytes()) for r in second])
    worker = Worker(bootstrap, database, tmp_path, app_id, env)
    try:
        wait_for(lambda: tables.count("responses", run_id) == n, "all responses", worker)
        wait_for(lambda: tables.window_sum(run_id) == n, "the whole metric window", worker)
        want = expected(range(n))
        wait_for_figures(tables, run_id, want, worker)
        rows = tables.scalar(
            "SELECT count() FROM quality_windows FINAL WHERE prompt_name = {p:String}", p=run_id
        )
        assert rows == len(want)  # one window: one row per segment
    finally:
        code = worker.stop()
    assert code == 0, worker.log()[-3000:]
