import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas import (
    EVENT_TYPES,
    ChatMessage,
    Experiment,
    InferenceResult,
    PromptRef,
    PromptRequest,
    Usage,
    Variant,
)
from schemas.export import JSON_DIR, render_all
from schemas.topics import (
    CORE_TOPICS,
    MAX_TOPIC_LEN,
    MAX_TOPIC_PARTITIONS,
    TopicSpec,
    inference_topic,
    reply_topic,
)


def _msg(text: str = "hi") -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def test_request_needs_exactly_one_prompt_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        PromptRequest()
    with pytest.raises(ValidationError, match="exactly one"):
        PromptRequest(messages=_msg(), prompt=PromptRef(name="p"))
    assert PromptRequest(prompt=PromptRef(name="p")).messages is None


def test_sticky_key_prefers_user_then_session_then_request() -> None:
    assert PromptRequest(messages=_msg(), user_id="u", session_id="s").sticky_key == "u"
    assert PromptRequest(messages=_msg(), session_id="s").sticky_key == "s"
    r = PromptRequest(messages=_msg())
    assert r.sticky_key == r.request_id


def test_wire_round_trip_is_lossless() -> None:
    r = PromptRequest(messages=_msg("héllo ✓"), attributes={"segment": "a"}, stream=True)
    again = PromptRequest.from_bytes(r.to_bytes())
    assert again == r


def test_timestamps_are_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    r = PromptRequest(messages=_msg(), ts=datetime(2026, 1, 1, 12, tzinfo=plus2))
    assert r.ts == datetime(2026, 1, 1, 10, tzinfo=UTC)
    naive = PromptRequest(messages=_msg(), ts=datetime(2026, 1, 1, 12))
    assert naive.ts.tzinfo == UTC


def test_deadline_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    r = PromptRequest(messages=_msg(), deadline=now)
    assert r.expired(now)
    assert not r.expired(now - timedelta(seconds=1))
    assert not PromptRequest(messages=_msg()).expired(now)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sampling", {"max_tokens": 0}),
        ("sampling", {"max_tokens": 100_000}),
        ("sampling", {"temperature": 3}),
        ("sampling", {"stop": ["x"] * 9}),
        ("tenant", "has space"),
        ("attributes", {"k": "v" * 300}),
        ("request_id", ""),
    ],
)
def test_bounds_are_enforced(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        PromptRequest.model_validate({"messages": [{"role": "user", "content": "x"}], field: value})


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    doc = json.loads(PromptRequest(messages=_msg()).to_bytes())
    doc["field_from_the_future"] = 1
    assert PromptRequest.model_validate(doc).messages == _msg()


def test_usage_total() -> None:
    assert Usage(input_tokens=3, output_tokens=4).total_tokens == 7


def test_result_ok_flag() -> None:
    assert InferenceResult(request_id="r", finish_reason="stop").ok


def test_experiment_validation() -> None:
    with pytest.raises(ValidationError, match="positive total weight"):
        Experiment(name="e", prompt_name="p", variants=[Variant(name="a", weight=0)])
    with pytest.raises(ValidationError, match="unique"):
        Experiment(
            name="e",
            prompt_name="p",
            variants=[Variant(name="a", weight=1), Variant(name="a", weight=1)],
        )


def test_exported_json_schema_matches_the_models() -> None:
    rendered = render_all()
    on_disk = {p.name: p.read_text() for p in JSON_DIR.glob("*.json")}
    assert set(on_disk) == set(rendered), "run `make schemas`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} is stale: run `make schemas`"
    assert len(rendered) == len(EVENT_TYPES)


def test_topic_catalogue_is_consistent() -> None:
    names = [t.name for t in CORE_TOPICS]
    assert len(names) == len(set(names))
    assert all(t.partitions >= 1 and t.contracts for t in CORE_TOPICS)
    assert inference_topic("gpu-a").name == "llm.inference.gpu-a"
    assert reply_topic("c1").name == "llm.replies.c1"


@pytest.mark.parametrize("partitions", [0, -1, MAX_TOPIC_PARTITIONS + 1, 2**31])
def test_a_topic_spec_refuses_a_partition_count_out_of_bounds(partitions: int) -> None:
    with pytest.raises(ValueError, match="partitions"):
        TopicSpec("t", partitions, "key", "purpose", ())


@pytest.mark.parametrize("name", ["", "t" * (MAX_TOPIC_LEN + 1)])
def test_a_topic_spec_refuses_a_name_kafka_cannot_hold(name: str) -> None:
    with pytest.raises(ValueError, match="topic name"):
        TopicSpec(name, 1, "key", "purpose", ())


def test_a_topic_spec_takes_the_bounds_themselves() -> None:
    assert TopicSpec("t" * MAX_TOPIC_LEN, 1, "k", "p", ()).name == "t" * MAX_TOPIC_LEN
    assert TopicSpec("t", 1, "k", "p", ()).partitions == 1
    assert TopicSpec("t", MAX_TOPIC_PARTITIONS, "k", "p", ()).partitions == MAX_TOPIC_PARTITIONS


def test_response_format_is_text_or_json() -> None:
    import pydantic

    from schemas import PromptRequest

    ok = PromptRequest(messages=[{"role": "user", "content": "hi"}], response_format="json")
    assert ok.response_format == "json"
    assert PromptRequest(messages=[{"role": "user", "content": "hi"}]).response_format == "text"
    with pytest.raises(pydantic.ValidationError):
        PromptRequest(messages=[{"role": "user", "content": "hi"}], response_format="yaml")
