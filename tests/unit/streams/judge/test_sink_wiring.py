"""The responses sink with the judge on: judge requests out for sampled app responses; a
verdict's row carries its parsed verdict, and nothing goes to the windows or judges for it."""

from __future__ import annotations

import logging

from opentelemetry import trace

from llmops.kafka.record import Record
from llmops.telemetry.ratelog import RejectionLog
from schemas import InferenceResult, PromptRequest
from schemas.topics import DLQ, EVENT_TYPE_HEADER, REQUESTS, RESPONSES
from streams.agents.sinks import SinkContext, fill_response, finish_responses
from streams.detectors.drivers import CHEAP_TIER
from streams.detectors.factory import create_detectors
from streams.judge.requests import (
    JUDGE_APP,
    JUDGE_CHECK,
    JUDGED_REQUEST,
    JudgeConfig,
    judge_request_id,
)
from streams.privacy import RAW
from streams.records import Batch, Converter

LOG = logging.getLogger("test.judge.sink")
JUDGE = JudgeConfig("judge-model", 1.0, ("rubric", "harm"))


def context(judge: JudgeConfig = JUDGE) -> SinkContext:
    return SinkContext(
        RAW,
        None,
        "features",
        tuple(create_detectors(CHEAP_TIER)),
        judge=judge,
        detector_failures=RejectionLog(LOG, "streams", clock=lambda: 0.0),
    )


def record(result: InferenceResult, offset: int) -> Record:
    return Record(RESPONSES.name, 0, offset, result.request_id.encode(), result.to_bytes(), [], 0)


def convert(sinks: SinkContext, *results: InferenceResult) -> Batch:
    converter = Converter(trace.get_tracer("test"), "streams", "g", 1 << 20, DLQ.name)

    def handle(value: InferenceResult, rec: Record, span: trace.Span, batch: Batch) -> None:
        fill_response(sinks, value, rec, span, batch)

    batch = converter.convert(
        [record(r, i) for i, r in enumerate(results)], InferenceResult, handle
    )
    finish_responses(sinks, batch)
    return batch


def app_result(request_id: str, **fields: object) -> InferenceResult:
    values = {"request_id": request_id, "finish_reason": "stop", "text": "Paris.", "app": "shop"}
    return InferenceResult.model_validate({**values, **fields})


def verdict(judged: str, check: str, text: str) -> InferenceResult:
    return app_result(
        judge_request_id(judged, check),
        app=JUDGE_APP,
        model="judge-model",
        text=text,
        attributes={JUDGED_REQUEST: judged, JUDGE_CHECK: check},
    )


def test_an_app_response_sends_one_judge_request_per_check_to_the_router() -> None:
    batch = convert(context(), app_result("a1", prompt_text="Capital of France?"))
    assert batch.rejected == 0 and len(batch.rows) == 1
    judge_out = [o for o in batch.outgoing if o.topic == REQUESTS.name]
    assert len(judge_out) == 2 and len(batch.outgoing_sources) == len(batch.outgoing)
    requests = [PromptRequest.model_validate_json(o.value) for o in judge_out]
    assert [r.attributes[JUDGE_CHECK] for r in requests] == ["rubric", "harm"]
    for out, request in zip(judge_out, requests, strict=True):
        assert out.key == request.request_id.encode()
        assert dict(out.headers)[EVENT_TYPE_HEADER] == b"PromptRequest"
        assert request.model == "judge-model" and request.app == JUDGE_APP
    # ... and its features still go to the windows.
    assert [o.topic for o in batch.outgoing].count("features") == 1
    assert batch.rows[0]["signals"]["refusal"] == 0.0


def test_a_verdict_is_stored_with_its_verdict_and_goes_nowhere_else() -> None:
    batch = convert(context(), verdict("a1", "harm", "Safe.\nSCORE: 5\nVERDICT: PASS"))
    assert batch.rejected == 0 and batch.outgoing == []  # no features, no judge request
    [row] = batch.rows
    assert row["signals"] == {"judge_parsed": 1.0, "judge_pass": 1.0, "judge_score": 5.0}
    assert set(row["signal_detectors"].values()) == {"judge_verdict@1"}
    assert row["app"] == JUDGE_APP and row["attributes"][JUDGED_REQUEST] == "a1"


def test_an_unparsable_verdict_is_stored_unparsed() -> None:
    [row] = convert(context(), verdict("a1", "rubric", "Hello there!")).rows
    assert row["signals"] == {"judge_parsed": 0.0}


def test_a_mixed_batch_judges_only_the_app_responses() -> None:
    batch = convert(
        context(),
        app_result("a1"),
        verdict("a0", "harm", "VERDICT: FAIL"),
        app_result("a2", error={"kind": "engine_error", "message": "x"}, text=""),
        app_result("a3"),
    )
    requests = [
        PromptRequest.model_validate_json(o.value)
        for o in batch.outgoing
        if o.topic == REQUESTS.name
    ]
    judged = sorted({r.attributes[JUDGED_REQUEST] for r in requests})
    assert judged == ["a1", "a3"]  # not the verdict, not the error
    assert [o.topic for o in batch.outgoing].count("features") == 3  # every app response
    assert len(batch.rows) == 4


def test_off_by_default() -> None:
    batch = convert(context(JudgeConfig()), app_result("a1"))
    assert [o.topic for o in batch.outgoing] == ["features"]
