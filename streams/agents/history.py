"""The prompt registry's history: llm.prompts -> `prompt_history` (016_prompt_history.sql).

Every version and every label move, as declared table sinks run by the worker like the others
(streams/agents/sinks.py). The topic carries two contracts, told apart by the event-type
header; the sink decodes the common Event envelope first (so the converter's size and JSON
checks apply), then the registry's own feed verifies the signature, the contract and the key
(llmops/prompts/live.py), exactly as the router does. A record the router would refuse is
skipped here, not dead-lettered: the routers own llm.prompts' dead letters.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span

from llmops.kafka.record import Record
from llmops.prompts.live import RegistryFeed
from llmops.prompts.registry import PromptSet
from schemas import Event, LabelMove, PromptVersion
from schemas.prompts import canonical_json
from schemas.topics import PROMPTS
from streams.agents.sinks import SinkContext, TableSink
from streams.records import Batch
from streams.rows import Row

PROMPT_HISTORY_TABLE = "prompt_history"
PROMPT_HISTORY_COLUMNS: tuple[str, ...] = (
    "prompt_name",
    "event",
    "event_id",
    "ts",
    "version",
    "label",
    "previous",
    "content_hash",
    "content",
    "model",
    "actor",
    "reason",
    "forced",
    "rollback",
    "suite_run_id",
    "source_partition",
    "source_offset",
)
# The converter has bounded the record's size already: the feed needs no second bound.
_NO_SECOND_BOUND = 2**62


def _base(event: PromptVersion | LabelMove, record: Record) -> Row:
    return {
        "prompt_name": event.name,
        "event_id": event.event_id,
        "ts": event.ts,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "label": "",
        "previous": 0,
        "content_hash": "",
        "content": "",
        "model": "",
        "actor": "",
        "reason": "",
        "forced": 0,
        "rollback": 0,
        "suite_run_id": "",
    }


def version_row(version: PromptVersion, record: Record) -> Row:
    return {
        **_base(version, record),
        "event": "version",
        "version": version.version,
        "content_hash": version.content_hash,
        "content": canonical_json(version.content()),
        "model": version.model or "",
        "actor": version.actor,
        "reason": version.source,  # a version's "why": the file it was pushed from
    }


def move_row(move: LabelMove, record: Record) -> Row:
    return {
        **_base(move, record),
        "event": "label",
        "version": move.version,
        "label": move.label,
        "previous": move.previous or 0,
        "actor": move.actor,
        "reason": move.reason,
        "forced": int(move.forced),
        "rollback": int(move.rollback),
        "suite_run_id": move.suite_run_id or "",
    }


def fill_prompt_history(
    context: SinkContext, _: Event, record: Record, span: Span, batch: Batch
) -> None:
    """A verified registry record's row (raises Rejected otherwise: skipped and counted)."""
    event = RegistryFeed(PromptSet(), context.signing, _NO_SECOND_BOUND).decode(record)
    if isinstance(event, PromptVersion):
        batch.rows.append(version_row(event, record))
    elif isinstance(event, LabelMove):
        batch.rows.append(move_row(event, record))


HISTORY_SINKS: tuple[TableSink[Any], ...] = (
    TableSink(
        "streams.prompt_history",
        PROMPTS,
        Event,
        fill_prompt_history,
        PROMPT_HISTORY_TABLE,
        PROMPT_HISTORY_COLUMNS,
        rejects="skip",
    ),
)
