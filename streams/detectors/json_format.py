"""JSON validity of answers to requests that asked for JSON.

Strict: the output must be one JSON document (RFC 8259, as orjson reads it: no NaN, no
trailing commas, no comments, nesting up to 1024, valid UTF-8, so a lone surrogate fails),
whitespace around it allowed. One concession, because models add it unasked and every
client library strips it: an output that is exactly one Markdown fence (```json or a bare
```) around a valid document counts as valid, with a `json_fenced` finding on the document's
span so an analyst can still count the fences. Prose around a fence is invalid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import orjson

from streams.detectors.base import Detector, Exchange, Finding, Signal

# The whole output one fence: an optional "json" tag, the document, the closing fence.
_FENCE: Final = re.compile(
    r"\A\s*+```(?:json)?[ \t]*+\r?\n(.*?)```\s*+\Z", re.DOTALL | re.IGNORECASE
)


def _parses(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:  # also raised for invalid UTF-8 (lone surrogates)
        return False
    return True


def check_json(output: str) -> tuple[bool, list[Finding]]:
    """Whether `output` is valid JSON under the rules above, and the fence finding if fenced."""
    if _parses(output):
        return True, []
    fence = _FENCE.match(output)
    if fence is not None and _parses(fence.group(1)):
        return True, [Finding("json_fenced", "output", fence.start(1), fence.end(1))]
    return False, []


class JsonFormatDetector(Detector):
    """Signal `json_valid` (1 or 0) when the request asked for JSON; nothing otherwise."""

    name = "json_validity"
    version = "1"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        out: list[list[Signal]] = []
        for exchange in exchanges:
            if not exchange.wants_json:
                out.append([])
                continue
            valid, findings = check_json(exchange.output)
            out.append([self.signal("json_valid", 1.0 if valid else 0.0, findings)])
        return out
