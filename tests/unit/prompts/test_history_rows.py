"""The prompt history sink's rows: one per version and per label move, every column filled,
and only verified records (the feed's checks) become rows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.trace import INVALID_SPAN

from llmops.kafka.deadletter import Rejected
from llmops.kafka.record import Record
from schemas import Event, LabelMove, PromptVersion
from schemas.topics import PROMPTS
from streams.agents.history import (
    PROMPT_HISTORY_COLUMNS,
    fill_prompt_history,
    move_row,
    version_row,
)
from streams.agents.sinks import SinkContext
from streams.privacy import text_policy
from streams.records import Batch
from tests import signing_kit
from tests.signing_kit import signed_headers


def _record(event: Event, key: str, signed: bool = True) -> Record:
    value = event.to_bytes()
    headers = signed_headers(PROMPTS.name, key.encode(), value, type(event).__name__)
    return Record(PROMPTS.name, 0, 7, key.encode(), value, headers if signed else headers[:-1], 0)


def _context() -> SinkContext:
    return SinkContext(text_policy("raw"), signing_kit.test_keys(), "features")


VERSION = PromptVersion.model_validate(
    {
        "name": "p",
        "version": 3,
        "model": "m",
        "params": {"temperature": 0.2},
        "messages": [{"role": "user", "content": "hi {{ x }}"}],
    }
)
MOVE = LabelMove(
    name="p",
    label="production",
    version=3,
    previous=2,
    actor="ada",
    reason="incident",
    forced=True,
    suite_run_id="run-9",
)


def test_version_and_move_rows_fill_every_column() -> None:
    row = version_row(VERSION, _record(VERSION, "p:3"))
    assert set(row) == set(PROMPT_HISTORY_COLUMNS)
    assert (row["event"], row["version"], row["model"], row["source_offset"]) == (
        "version",
        3,
        "m",
        7,
    )
    assert json.loads(row["content"])["params"] == {"temperature": 0.2}
    assert row["content_hash"] == VERSION.content_hash
    move: dict[str, Any] = move_row(MOVE, _record(MOVE, "p@production"))
    assert set(move) == set(PROMPT_HISTORY_COLUMNS)
    assert (move["event"], move["label"], move["previous"], move["forced"]) == (
        "label",
        "production",
        2,
        1,
    )
    assert (move["actor"], move["reason"], move["suite_run_id"]) == ("ada", "incident", "run-9")


def test_only_verified_records_become_rows() -> None:
    batch = Batch()
    fill_prompt_history(_context(), MOVE, _record(MOVE, "p@production"), INVALID_SPAN, batch)
    fill_prompt_history(_context(), VERSION, _record(VERSION, "p:3"), INVALID_SPAN, batch)
    assert [r["event"] for r in batch.rows] == ["label", "version"]
    with pytest.raises(Rejected) as caught:
        fill_prompt_history(
            _context(), MOVE, _record(MOVE, "p@production", signed=False), INVALID_SPAN, batch
        )
    assert caught.value.kind == "unsigned"
    assert len(batch.rows) == 2
