"""Common base for every event on the wire."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# Bounds shared by several contracts: everything on the wire has a ceiling.
MAX_ID_LEN = 128
MAX_NAME_LEN = 128
MAX_TEXT_LEN = 1_000_000
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_LEN = 256


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # Naive timestamps are taken as UTC; aware ones are converted, so every ts compares.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN, pattern=r"^[A-Za-z0-9_.:/\-]+$")]
Attributes = Annotated[dict[str, str], Field(max_length=MAX_ATTRIBUTES)]


class Contract(BaseModel):
    """A wire type: unknown fields are ignored so producers can add fields first."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Event(Contract):
    schema_version: int = SCHEMA_VERSION
    event_id: Identifier = Field(default_factory=new_id)
    ts: UtcDatetime = Field(default_factory=utc_now)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Self:
        return cls.model_validate_json(data)
