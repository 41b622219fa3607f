"""Experiment sinks, declared like streams.agents.sinks.SINKS and run by the same SinkAgent:

- llm.feedback -> `feedback`: apps' outcomes (schemas/feedback.py). What does not decode as
  Feedback (bad JSON, an out-of-range score, a label too long) is dead-lettered with the
  reason; the comment is stored as Settings.store_text says (redacted by default).
- llm.experiments -> `experiment_events`: every state of every experiment, kept as history
  (the topic is compacted). Only signed states are stored: a forged or unsigned one is a
  dead letter (`unsigned`, `bad_signature`), as the router refuses it.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span

from llmops.kafka.record import Record
from schemas import Experiment
from schemas.feedback import Feedback
from schemas.topics import EXPERIMENTS, FEEDBACK
from streams.agents.sinks import SinkContext, TableSink
from streams.records import Batch
from streams.rows import Row

FEEDBACK_TABLE = "feedback"
FEEDBACK_COLUMNS = (
    "request_id",
    "event_id",
    "ts",
    "tenant",
    "app",
    "user_id",
    "score",
    "thumbs",
    "label",
    "comment",
)
EXPERIMENT_EVENTS_TABLE = "experiment_events"
EXPERIMENT_EVENT_COLUMNS = (
    "name",
    "revision",
    "event_id",
    "ts",
    "status",
    "prompt_name",
    "control",
    "sticky",
    "shares",
    "stopped",
    "guardrails",
    "reason",
    "winner",
    "started_at",
    "payload",
)
THUMBS = {"up": 1, "down": -1, None: 0}


def feedback_row(feedback: Feedback, text: Any = None) -> Row:
    """`text`: the TextPolicy for the comment (None keeps it as sent)."""
    comment = feedback.comment or ""
    return {
        "request_id": feedback.request_id,
        "event_id": feedback.event_id,
        "ts": feedback.ts,
        "tenant": feedback.tenant,
        "app": feedback.app,
        "user_id": feedback.user_id or "",
        "score": feedback.score,
        "thumbs": THUMBS[feedback.thumbs],
        "label": feedback.label or "",
        "comment": text.text(comment) if text is not None else comment,
    }


def experiment_row(experiment: Experiment) -> Row:
    return {
        "name": experiment.name,
        "revision": experiment.revision,
        "event_id": experiment.event_id,
        "ts": experiment.ts,
        "status": experiment.status,
        "prompt_name": experiment.prompt_name,
        "control": experiment.control_name,
        "sticky": experiment.sticky,
        "shares": experiment.shares(),
        "stopped": [v.name for v in experiment.variants if v.stopped],
        "guardrails": list(experiment.guardrails),
        "reason": experiment.reason,
        "winner": experiment.winner or "",
        "started_at": experiment.started_at,
        "payload": experiment.to_bytes().decode(),
    }


def fill_feedback(
    context: SinkContext, feedback: Feedback, record: Record, span: Span, batch: Batch
) -> None:
    batch.rows.append(feedback_row(feedback, context.text_policy))


def fill_experiment(
    context: SinkContext, experiment: Experiment, record: Record, span: Span, batch: Batch
) -> None:
    record.verify(context.signing, Experiment)  # raises a Rejected: dead-lettered
    batch.rows.append(experiment_row(experiment))


EXPERIMENT_SINKS: tuple[TableSink[Any], ...] = (
    TableSink(
        "streams.feedback",
        FEEDBACK,
        Feedback,
        fill_feedback,
        FEEDBACK_TABLE,
        FEEDBACK_COLUMNS,
    ),
    TableSink(
        "streams.experiments",
        EXPERIMENTS,
        Experiment,
        fill_experiment,
        EXPERIMENT_EVENTS_TABLE,
        EXPERIMENT_EVENT_COLUMNS,
    ),
)
