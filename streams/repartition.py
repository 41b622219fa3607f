"""Packing the repartition topic's records: one record per window group per sink batch.

The responses sink makes one `ResponseFeatures` record per response; publishing each alone
costs the worker a produce, a fetch and faust's per-message machinery twice over. Once the
store's refusals are known (the features of refused rows are withheld already), the batch's
features records are grouped by key (the window group), in order, into
`ResponseFeaturesBatch` records that stay below the broker's message size. Pure, no IO.

The packed value is the members' JSON joined into `{"features":[...]}` (no re-encoding).
A packed record carries its first member's headers, event type "ResponseFeaturesBatch":
its trace context is the first member's, and the windows agent links that one.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmops.telemetry.propagation import Headers
from schemas.topics import EVENT_TYPE_HEADER
from streams.features import MAX_PACKED_FEATURES
from streams.records import Outgoing

PACKED_EVENT_TYPE = "ResponseFeaturesBatch"
_OPEN = b'{"features":['
_CLOSE = b"]}"
# Room for a record's framing next to its value, key and headers (lengths, varints, CRC).
RECORD_OVERHEAD = 256


def is_packed(headers: Headers) -> bool | None:
    """True/False by the event type header; None when there is none."""
    for name, value in headers:
        if name == EVENT_TYPE_HEADER:
            return value == PACKED_EVENT_TYPE.encode()
    return None


def looks_packed(payload: bytes) -> bool:
    """A record without an event type header: packed by shape (its first field)."""
    return payload.lstrip().startswith(b'{"features"')


def packed_headers(headers: Headers) -> Headers:
    """The first member's headers with the packed event type."""
    packed = [(n, v) for n, v in headers if n != EVENT_TYPE_HEADER]
    packed.append((EVENT_TYPE_HEADER, PACKED_EVENT_TYPE.encode()))
    return packed


def _size(key: bytes | None, headers: Headers) -> int:
    framing = len(_OPEN) + len(_CLOSE) + RECORD_OVERHEAD
    return framing + len(key or b"") + sum(len(n) + len(v) for n, v in headers)


def pack_features(
    outgoing: Sequence[Outgoing],
    features_topic: str,
    max_bytes: int,
    max_members: int = MAX_PACKED_FEATURES,
) -> list[Outgoing]:
    """`outgoing` with its `features_topic` records packed per key, in order: each key's
    packed records take the place of its first member; every other record is unchanged.
    A packed record stays within `max_bytes` (value, key, headers and framing) unless one
    member alone is larger: that one is then packed alone, as it was published before."""
    slots: list[Outgoing | list[Outgoing]] = []
    groups: dict[bytes | None, list[Outgoing]] = {}
    for out in outgoing:
        if out.topic != features_topic:
            slots.append(out)
            continue
        group = groups.get(out.key)
        if group is None:
            group = groups[out.key] = []
            slots.append(group)
        group.append(out)
    packed: list[Outgoing] = []
    for slot in slots:
        if isinstance(slot, Outgoing):
            packed.append(slot)
        else:
            packed.extend(_pack(slot, max_bytes, max_members))
    return packed


def _pack(members: Sequence[Outgoing], max_bytes: int, max_members: int) -> list[Outgoing]:
    out: list[Outgoing] = []
    chunk: list[bytes] = []
    first = members[0]
    headers = packed_headers(first.headers)
    size = _size(first.key, headers)
    for member in members:
        grown = size + len(member.value) + (1 if chunk else 0)
        if chunk and (grown > max_bytes or len(chunk) >= max_members):
            out.append(Outgoing(first.topic, first.key, _value(chunk), headers))
            chunk, first = [], member
            headers = packed_headers(member.headers)
            size = _size(member.key, headers)
            grown = size + len(member.value)
        chunk.append(member.value)
        size = grown
    out.append(Outgoing(first.topic, first.key, _value(chunk), headers))
    return out


def _value(values: Sequence[bytes]) -> bytes:
    return _OPEN + b",".join(values) + _CLOSE
