"""W3C trace context in Kafka headers (`traceparent`, `tracestate`, baggage).

Headers come from any producer, so they are checked against the W3C formats and limits
before OpenTelemetry sees them: its propagators log a warning for each bad one, which a
hostile producer turns into a line per record. A header that fails is dropped (the record
is processed without it) and logged at a bounded rate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter

from llmops.telemetry.ratelog import RejectionLog

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
RawHeaders = Sequence[tuple[str, bytes | None]]

# W3C Trace Context: version ff and all-zero ids are invalid; version 00 has nothing after.
_TRACEPARENT = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
MAX_TRACESTATE_CHARS = 512
MAX_TRACESTATE_MEMBERS = 32
# W3C Baggage: its limits, and the grammar of a member (`key=value;property...`).
MAX_BAGGAGE_BYTES = 8192
MAX_BAGGAGE_MEMBERS = 180
MAX_BAGGAGE_MEMBER_BYTES = 4096
_TOKEN = r"[!#-'*+.0-9A-Z^-z|~-]+"
_BAGGAGE_VALUE = r"[!#-+\--:<-\[\]-~]*"
_OWS = r"[ \t]*"
_BAGGAGE_MEMBER = re.compile(
    rf"{_OWS}{_TOKEN}{_OWS}={_OWS}{_BAGGAGE_VALUE}{_OWS}"
    rf"(?:;{_OWS}{_TOKEN}{_OWS}(?:={_OWS}{_BAGGAGE_VALUE}{_OWS})?)*"
)
_BAGGAGE_SPLIT = re.compile(r"[ \t]*,[ \t]*")

_rejections = RejectionLog(log, "trace-context")


class _KafkaHeaderGetter(Getter[Sequence[tuple[str, bytes | None]]]):
    def get(self, carrier: Sequence[tuple[str, bytes | None]], key: str) -> list[str] | None:
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == key and v is not None]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, bytes | None]]) -> list[str]:
        return [k for k, _ in carrier]


_GETTER = _KafkaHeaderGetter()


def inject_context(headers: Headers, context: Context | None = None) -> Headers:
    """Append the current (or given) trace context to `headers`; returns the same list."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    headers.extend((k, v.encode("latin-1")) for k, v in carrier.items())
    return headers


def extract_context(headers: Iterable[tuple[str, bytes | None]] | None) -> Context:
    """The context a record was produced in; an empty context if it carries none (or only
    headers that are not valid W3C ones)."""
    return propagate.extract(valid_trace_headers(list(headers or ())), getter=_GETTER)


def valid_trace_headers(headers: RawHeaders) -> RawHeaders:
    """`headers` less trace headers the propagators would warn about (or misread).

    Like the propagators, only the first `traceparent` and `baggage` count; every
    `tracestate` goes with its traceparent, and all of them go if one is bad."""
    named: dict[str, list[bytes]] = {}
    for key, value in headers:
        if value is not None:
            named.setdefault(key.lower(), []).append(value)
    drop: set[str] = set()
    parents = named.get("traceparent")
    if parents and not _valid_traceparent(parents[0]):
        drop |= {"traceparent", "tracestate"}
    states = named.get("tracestate")
    if states and "tracestate" not in drop and not _valid_tracestate(states):
        drop.add("tracestate")
    baggage = named.get("baggage")
    if baggage and not _valid_baggage(baggage[0]):
        drop.add("baggage")
    if not drop:
        return headers
    return [(k, v) for k, v in headers if k.lower() not in drop]


def _reject(header: str, reason: str) -> bool:
    _rejections.rejected(f"bad_{header}", reason, header, level=logging.INFO)
    return False


def _valid_traceparent(value: bytes) -> bool:
    if len(value) == 55 and _TRACEPARENT.fullmatch(value.decode("latin-1")):
        return True
    return _reject("traceparent", f"not a W3C traceparent ({len(value)} bytes), dropped")


def _valid_tracestate(values: list[bytes]) -> bool:
    text = ",".join(v.decode("latin-1") for v in values)
    members = [m.strip(" \t") for m in text.split(",")]
    members = [m for m in members if m]
    if (
        len(text) <= MAX_TRACESTATE_CHARS
        and len(members) <= MAX_TRACESTATE_MEMBERS
        and all(_TRACESTATE_MEMBER.fullmatch(m) for m in members)
        and len({m.split("=", 1)[0] for m in members}) == len(members)
    ):
        return True
    return _reject("tracestate", f"not a W3C tracestate ({len(text)} chars), dropped")


def _valid_baggage(value: bytes) -> bool:
    if len(value) > MAX_BAGGAGE_BYTES or not value.isascii():
        return _reject("baggage", f"over {MAX_BAGGAGE_BYTES} bytes or not ASCII, dropped")
    members = [m for m in _BAGGAGE_SPLIT.split(value.decode("ascii")) if m]
    if len(members) > MAX_BAGGAGE_MEMBERS:
        return _reject("baggage", f"{len(members)} members, over {MAX_BAGGAGE_MEMBERS}, dropped")
    if all(len(m) <= MAX_BAGGAGE_MEMBER_BYTES and _BAGGAGE_MEMBER.fullmatch(m) for m in members):
        return True
    return _reject("baggage", "a member is not W3C `key=value;properties`, dropped")


def header_value(headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key.lower() == name and value is not None:
            return value.decode("utf-8", errors="replace")
    return None
