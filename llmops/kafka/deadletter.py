"""Build dead letters: bad input is kept whole, with the reason, and never stops a consumer."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

from pydantic import ValidationError

from schemas import DeadLetter, DeadLetterKind
from schemas.base import MAX_ID_LEN
from schemas.requests import is_reply_topic

if TYPE_CHECKING:  # the record module builds on this one
    from llmops.kafka.record import Record

# A dead letter carries at most this much of the original payload (base64 grows it by 4/3).
MAX_KEPT_PAYLOAD = 256 * 1024


class Rejected(Exception):
    """Raised by a handler for input that must go to the dead-letter topic."""

    def __init__(
        self,
        kind: DeadLetterKind,
        reason: str,
        request_id: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        super().__init__(_text(reason))
        self.kind: DeadLetterKind = kind
        self.reason = _text(reason)  # reasons quote input, which may hold lone surrogates
        self.request_id = request_id
        self.reply_to = reply_to


def rejection_for(error: Exception) -> tuple[Rejected, Exception | None]:
    """What a handler's exception makes of its record, and the bug behind it if any (its
    traceback is worth a log line): bad input it rejected, input nested deeper than parsing
    can go, or a bug, which fails that record alone."""
    if isinstance(error, Rejected):
        return error, None
    if isinstance(error, RecursionError):
        return Rejected("schema_invalid", "nested too deeply to process"), None
    return Rejected("processing_error", f"{type(error).__name__}: {error}"), error


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    """One line per problem, `field.path: message`, capped so reasons stay readable."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
        for e in error.errors(include_url=False)[:limit]
    ]
    more = error.error_count() - len(problems)
    if more > 0:
        problems.append(f"... and {more} more")
    return "; ".join(problems)


def classify_decode_error(payload: bytes, error: Exception) -> Rejected:
    """Turn a failure to decode `payload` into the dead-letter kind and reason it deserves."""
    if isinstance(error, ValidationError):
        if any(e["type"] == "json_invalid" for e in error.errors()):
            return Rejected("not_json", f"not valid JSON: {error.errors()[0]['msg']}")
        return Rejected("schema_invalid", describe_validation_error(error))
    if isinstance(error, RecursionError):
        # Nested deeper than a parser or validator can recurse: bad input, not a bug.
        return Rejected("not_json", f"nested too deeply to decode ({len(payload)} bytes)")
    return Rejected("processing_error", f"{type(error).__name__}: {error}")


def _is_identifier(value: object) -> bool:
    """Fits the contracts' Identifier: else the dead letter or error reply carrying it would
    fail validation (JSON can spell lone surrogates, which are no valid text)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN and _is_text(value)


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(value: str) -> str:
    """`value` as valid text: lone surrogates (from JSON escapes) shown as escapes."""
    return value if _is_text(value) else value.encode("utf-8", "backslashreplace").decode()


def sniff_reply_fields(payload: bytes) -> tuple[str | None, str | None]:
    """Best effort (request_id, reply_to) from an invalid payload, so the app still hears back."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, None
    if not isinstance(doc, dict):
        return None, None
    request_id, reply_to = doc.get("request_id"), doc.get("reply_to")
    return (
        request_id if _is_identifier(request_id) else None,
        # Only a reply topic: an invalid request must not steer our output anywhere else.
        reply_to if isinstance(reply_to, str) and is_reply_topic(reply_to) else None,
    )


def build_dead_letter(record: Record, rejected: Rejected, service: str) -> DeadLetter:
    """`record` as a dead letter from `service`: the reason, the source topic, partition and
    offset, and the key, headers and payload (bounded) as they came."""
    raw = record.value or b""
    return DeadLetter(
        kind=rejected.kind,
        reason=_text(rejected.reason[:8192]),
        service=service,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
        payload_b64=base64.b64encode(raw[:MAX_KEPT_PAYLOAD]).decode(),
        payload_size=len(raw),
        headers={k: (v or b"").decode("utf-8", errors="replace")[:1024] for k, v in record.headers},
        request_id=rejected.request_id if _is_identifier(rejected.request_id) else None,
        reply_to=rejected.reply_to,
    )
