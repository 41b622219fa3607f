"""Common base for every event on the wire."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# Bounds shared by several contracts: everything on the wire has a ceiling.
MAX_ID_LEN = 128
MAX_NAME_LEN = 128
MAX_TEXT_LEN = 1_000_000
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_LEN = 256
MAX_ROUTE_REASON = 512  # why the router sent a request where it did: a sentence, not a log

# Numeric ceilings: every number on the wire fits what reads it. Engines hold token counts and
# sampling knobs in int32 tensors; the ClickHouse columns (clickhouse/migrations/*.sql) are UInt32
# (tokens, versions, sizes, partitions) and UInt64 (offsets, window counts); JSON readers in
# other languages parse int64 exactly. Floats are finite (no NaN or Infinity, which JSON cannot
# carry and a sum or percentile would spread), with ceilings no real value comes near.
MAX_INT32 = 2**31 - 1
MAX_UINT32 = 2**32 - 1
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
MAX_TOKENS = MAX_INT32  # a token count: int32 in torch, UInt32 in ClickHouse
MAX_VERSION = MAX_UINT32  # prompt versions: UInt32 columns
MAX_PARTITION = MAX_INT32  # Kafka partition ids are int32
MAX_OFFSET = MAX_INT64  # Kafka offsets are int64 (UInt64 column)
MAX_PAYLOAD_BYTES = MAX_INT32  # Kafka record sizes are int32 (UInt32 columns)
MAX_COUNT = MAX_INT64  # cumulative counters (UInt64 columns)
MAX_DURATION_MS = 366 * 86_400_000.0  # a year: no request, latency or deadline is longer
MAX_COST_USD = 1e12  # one request's cost, one pool's prices
MAX_TOTAL_COST_USD = 1e18  # a sum of many requests' costs (a metric window)
MAX_RATE_PER_S = 1e12  # tokens or requests per second
MAX_WEIGHT = 1e6  # a variant's traffic weight (relative)
MAX_STATISTIC = 1e15  # drift statistics and thresholds, either sign
# ClickHouse DateTime64(3) holds 1900-01-01 .. 2299-12-31 23:59:59.999. Event times keep a
# day clear of both ends, so what is derived from them (a metric window's start, floored to
# its length, and its end, up to an hour later) still fits a column.
MIN_TIME = datetime(1900, 1, 2, tzinfo=UTC)
MAX_TIME = datetime(2299, 12, 31, tzinfo=UTC)
MIN_STORED_TIME = datetime(1900, 1, 1, tzinfo=UTC)
MAX_STORED_TIME = datetime(2299, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # Naive timestamps are taken as UTC; aware ones are converted, so every ts compares.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it: a ValueError, not a crash
        raise ValueError("datetime out of range") from None


def _time_within(low: datetime, high: datetime) -> Any:
    def check(value: datetime) -> datetime:
        value = _as_utc(value)
        if not low <= value <= high:
            raise ValueError(f"datetime must be within {low.isoformat()} .. {high.isoformat()}")
        return value

    return check


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bounded_time(low: datetime, high: datetime) -> Any:
    return Field(json_schema_extra={"formatMinimum": _iso(low), "formatMaximum": _iso(high)})


# An event time: UTC, within what ClickHouse's DateTime64(3) holds (with a day to spare).
UtcDatetime = Annotated[
    datetime,
    AfterValidator(_time_within(MIN_TIME, MAX_TIME)),
    _bounded_time(MIN_TIME, MAX_TIME),
]
# A time derived from event times (a window's bounds): the column's own range.
StoredDatetime = Annotated[
    datetime,
    AfterValidator(_time_within(MIN_STORED_TIME, MAX_STORED_TIME)),
    _bounded_time(MIN_STORED_TIME, MAX_STORED_TIME),
]
# Bounded numbers shared by several contracts (JSON Schema minimum/maximum carry the bounds).
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]
Millis = Annotated[float, Field(ge=0.0, le=MAX_DURATION_MS, allow_inf_nan=False)]
CostUsd = Annotated[float, Field(ge=0.0, le=MAX_COST_USD, allow_inf_nan=False)]
RatePerS = Annotated[float, Field(ge=0.0, le=MAX_RATE_PER_S, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN, pattern=r"^[A-Za-z0-9_.:/\-]+$")]
Attributes = Annotated[dict[str, str], Field(max_length=MAX_ATTRIBUTES)]


class Contract(BaseModel):
    """A wire type: unknown fields are ignored so producers can add fields first."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Event(Contract):
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=MAX_INT32)
    event_id: Identifier = Field(default_factory=new_id)
    ts: UtcDatetime = Field(default_factory=utc_now)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Self:
        return cls.model_validate_json(data)
