"""The embedding tier in the real worker (`python -m streams`, real broker, real ClickHouse
engine, the real all-MiniLM-L6-v2): N responses in, their rows out with the tier's signals
and the output embedding, for exactly the responses the configured sample picks."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from schemas import ErrorInfo, InferenceResult
from streams.sampling import sampled
from tests.integration.streams.test_worker import (  # noqa: F401  (fixtures)
    Tables,
    Worker,
    own_bootstrap,
    run_id,
    send_result,
    tables,
    wait_for,
)

RATE = 0.5
ENV = {
    "LLMOPS_DETECTORS": json.dumps(["lengths", "refusal_patterns", "minilm_embeddings"]),
    "LLMOPS_EMBEDDING_SAMPLE_RATE": str(RATE),
}
CONTEXT = "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall."
QUESTION = "Tell me about the Eiffel Tower."
GROUNDED = "The Eiffel Tower stands in Paris. Bananas are rich in potassium."
REFUSAL = "I'm afraid that's not something I can do."
N = 16


def in_sample(prefix: str) -> str:
    """A request id starting with `prefix` that the sample picks."""
    return next(f"{prefix}-{k}" for k in range(1000) if sampled(f"{prefix}-{k}", RATE))


def result(request_id: str, text: str, ts: datetime, **extra: Any) -> InferenceResult:
    return InferenceResult(
        request_id=request_id,
        ts=ts,
        text=text,
        finish_reason="stop",
        prompt_text=QUESTION,
        pool="cpu",
        model="tiny",
        prompt_name=request_id.split("-")[0],
        prompt_version=1,
        **extra,
    )


def test_the_worker_stores_the_embedding_tier_signals_of_the_sampled_responses(
    own_bootstrap: str,  # noqa: F811
    database: str,
    tables: Tables,  # noqa: F811
    run_id: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    results = [
        result(f"{run_id}-{i}", f"Answer number {i} is about the tower.", now) for i in range(N - 3)
    ]
    grounded = result(in_sample(f"{run_id}-grounded"), GROUNDED, now, context=CONTEXT)
    refusal = result(in_sample(f"{run_id}-refusal"), REFUSAL, now)
    failed = result(in_sample(f"{run_id}-failed"), "", now).model_copy(
        update={"finish_reason": "error", "error": ErrorInfo(kind="engine_error", message="x")}
    )
    results += [grounded, refusal, failed]
    results = [
        r.model_copy(update={"ts": now + timedelta(milliseconds=i)}) for i, r in enumerate(results)
    ]
    worker = Worker(own_bootstrap, database, tmp_path, f"streams-{run_id}", ENV)
    producer = KafkaProducer(bootstrap_servers=own_bootstrap, acks="all")
    try:
        for r in results:
            send_result(producer, r.to_bytes())
        producer.flush()
        wait_for(lambda: tables.count("responses", run_id) == N, "the responses", worker)
        stored = {
            row["request_id"]: row
            for row in tables.client.query(
                "SELECT request_id, signals, signal_detectors, embedding, finding_signal,"
                " finding_kind, finding_where, finding_start, finding_end"
                " FROM responses FINAL WHERE startsWith(request_id, {p:String})",
                parameters={"p": run_id},
            ).named_results()
        }
    finally:
        code = worker.stop()
        producer.close()
    assert code == 0, worker.log()[-3000:]
    assert set(stored) == {r.request_id for r in results}

    embedded = {rid for rid, row in stored.items() if row["embedding"]}
    expected = {r.request_id for r in results if r.text and sampled(r.request_id, RATE)}
    assert embedded == expected
    assert {grounded.request_id, refusal.request_id} <= embedded
    assert 0 < len(embedded) < N
    for rid, row in stored.items():
        signals, detectors = row["signals"], row["signal_detectors"]
        assert "output_chars" in signals, rid  # the cheap tier ran on every response
        if rid not in embedded:
            assert "embedding" not in signals and "relevance" not in signals, rid
            continue
        vector = row["embedding"]
        assert len(vector) == 384
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, abs_tol=1e-4)
        assert signals["embedding"] == 1.0
        for name in ("embedding", "refusal_similarity", "relevance"):
            assert detectors[name] == "minilm_embeddings@1", (rid, name)
            assert -1.0 <= signals[name] <= 1.0

    answers = [row for rid, row in stored.items() if rid in embedded and "-grounded" not in rid]
    top_answer = max(
        row["signals"]["refusal_similarity"]
        for row in answers
        if "-refusal" not in row["request_id"]
    )
    refused = stored[refusal.request_id]["signals"]
    assert refused["refusal_similarity"] > top_answer
    assert refused["refusal"] == 0.0  # a refusal no pattern knows: only the embeddings see it

    row = stored[grounded.request_id]
    assert row["signals"]["semantic_grounding"] == 0.5
    assert row["signal_detectors"]["semantic_grounding"] == "minilm_embeddings@1"
    findings = list(
        zip(
            row["finding_signal"],
            row["finding_kind"],
            row["finding_where"],
            row["finding_start"],
            row["finding_end"],
            strict=True,
        )
    )
    start = GROUNDED.index("Bananas")
    assert findings == [
        ("semantic_grounding", "unsupported_sentence", "output", start, len(GROUNDED))
    ]
