"""Outcomes apps report about a response: llm.feedback, keyed by request id.

A score, a thumb, a free-form label, or any of them together (at least one), about the
response of `request_id`. Stored in ClickHouse (`feedback`) and joined there to the response's
experiment and variant (`feedback_by_variant`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import Event, Identifier, Name

# Scores are whatever scale the app uses (0..1, 1..5 stars, NPS -100..100): bounded so a sum
# over millions of them stays exact enough and finite.
MIN_SCORE = -1000.0
MAX_SCORE = 1000.0
MAX_LABEL = 128
MAX_COMMENT = 4096

Thumbs = Literal["up", "down"]


class Feedback(Event):
    """One outcome of one response (several per response are kept, by event id)."""

    request_id: Identifier
    score: float | None = Field(default=None, ge=MIN_SCORE, le=MAX_SCORE, allow_inf_nan=False)
    thumbs: Thumbs | None = None
    label: str | None = Field(default=None, min_length=1, max_length=MAX_LABEL)
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)
    tenant: Name = "default"
    app: Name = "default"
    user_id: Identifier | None = None

    @model_validator(mode="after")
    def _says_something(self) -> Feedback:
        if self.score is None and self.thumbs is None and self.label is None:
            raise ValueError("feedback needs a score, a thumbs up/down or a label")
        return self
