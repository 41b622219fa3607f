"""W3C trace context in Kafka headers (`traceparent`, `tracestate`, baggage)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter

Headers = list[tuple[str, bytes]]


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
    """The context a record was produced in; an empty context if it carries none."""
    return propagate.extract(list(headers or ()), getter=_GETTER)


def header_value(headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key.lower() == name and value is not None:
            return value.decode("utf-8", errors="replace")
    return None
