"""Signed records: HMAC-SHA256 under a deployment key, so only our services speak for pools
and results (anyone who can write to a topic could otherwise switch a pool off or replace a
stored result).

A signature covers the topic, the event type header, the key and the value, so a signed
record cannot be replayed onto another topic (a reply copied into llm.responses), as another
kind of event, or under another key. It travels in one header:

    llmops-signature: v1=<key id>:<64 hex digits>

Verification accepts the current key and any previous ones by id, so a key can be rotated:
give every service the new key with the old one among the previous keys, restart them, then
drop the old one. HMAC is symmetric: whoever can verify can sign, so apps never get the key
(their replies are protected by the broker's ACLs instead: infra/kafka/acls.yaml).

Pure: no IO. A failed check raises SignatureError, a Rejected, so every consumer's existing
path dead-letters it (kinds `unsigned` and `bad_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from llmops.config import LOOPBACK_HOSTS, Settings
from llmops.kafka.deadletter import Rejected
from llmops.secretfile import SIGNING_KEY_FILE, SecretFileError, read_or_create_secret
from schemas.topics import EVENT_TYPE_HEADER

SIGNATURE_HEADER = "llmops-signature"
VERSION = "v1"
# Shorter keys are refused: an HMAC key should be as strong as its hash (256 bits ideally).
MIN_KEY_BYTES = 16
KEY_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_KEY_ID = re.compile(KEY_ID_PATTERN)
_SIGNATURE = re.compile(rf"^{VERSION}=([A-Za-z0-9_.-]{{1,64}}):([0-9a-f]{{64}})$")
# Domain separation: these bytes are never the MAC input of anything else.
_DOMAIN = b"llmops-record-signature/" + VERSION.encode()

SignatureProblem = Literal["unsigned", "bad_signature"]
HeaderList = Iterable[tuple[str, bytes | None]]


class SigningConfigError(ValueError):
    """Signing is required but not configured, or a key is unusable."""


class SignatureError(Rejected):
    """A record without a valid signature: dead-lettered as `unsigned` or `bad_signature`."""

    def __init__(self, kind: SignatureProblem, reason: str) -> None:
        super().__init__(kind, reason)


def _field(part: bytes | None) -> bytes:
    # Length-prefixed, with absence distinct from empty: no two inputs share an encoding.
    if part is None:
        return b"\x00"
    return b"\x01" + len(part).to_bytes(8, "big") + part


def signed_bytes(topic: str, event_type: str | None, key: bytes | None, value: bytes) -> bytes:
    """The MAC input: domain, topic, event type, key and value, each length-prefixed."""
    return b"".join(
        (
            _field(_DOMAIN),
            _field(topic.encode()),
            _field(event_type.encode() if event_type is not None else None),
            _field(key),
            _field(value),
        )
    )


def _only_header(headers: HeaderList, name: str) -> tuple[int, bytes | None]:
    """How many `name` headers there are, and the value of the last one."""
    count, value = 0, None
    for header, raw in headers:
        if header == name:
            count, value = count + 1, raw
    return count, value


def _check_key(key_id: str, key: bytes) -> None:
    if not _KEY_ID.match(key_id):
        raise SigningConfigError(f"signing key id {key_id!r} must match {KEY_ID_PATTERN}")
    if len(key) < MIN_KEY_BYTES:
        raise SigningConfigError(
            f"signing key {key_id!r} is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
        )


@dataclass(frozen=True)
class SigningKeys:
    """The key records are signed with (`key_id`, `key`) and those still accepted."""

    key_id: str
    key: bytes = field(repr=False)
    previous: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        _check_key(self.key_id, self.key)
        ids = [self.key_id]
        for key_id, key in self.previous:
            _check_key(key_id, key)
            ids.append(key_id)
        if len(set(ids)) != len(ids):
            raise SigningConfigError(f"signing key ids must be unique: {ids}")

    def _accepted(self) -> Mapping[str, bytes]:
        return {self.key_id: self.key, **dict(self.previous)}

    def sign(self, topic: str, event_type: str | None, key: bytes | None, value: bytes) -> bytes:
        """The signature header's value for this record."""
        digest = hmac.new(
            self.key, signed_bytes(topic, event_type, key, value), hashlib.sha256
        ).hexdigest()
        return f"{VERSION}={self.key_id}:{digest}".encode()

    def header(
        self, topic: str, headers: HeaderList, key: bytes | None, value: bytes
    ) -> tuple[str, bytes]:
        """The signature header for a record about to be sent with `headers`."""
        _, event_type = _only_header(headers, EVENT_TYPE_HEADER)
        return SIGNATURE_HEADER, self.sign(topic, _text(event_type), key, value)

    def verify(
        self,
        topic: str,
        headers: HeaderList,
        key: bytes | None,
        value: bytes | None,
        expect: str,
    ) -> str:
        """Check a consumed record signed as an `expect` event; returns the key id that
        signed it, or raises SignatureError with the reason."""
        headers = list(headers)
        count, raw = _only_header(headers, SIGNATURE_HEADER)
        if count == 0:
            raise SignatureError("unsigned", f"no {SIGNATURE_HEADER} header")
        if count > 1:
            raise SignatureError("bad_signature", f"{count} {SIGNATURE_HEADER} headers")
        match = _SIGNATURE.match(_text(raw) or "")
        if match is None:
            raise SignatureError("bad_signature", f"malformed {SIGNATURE_HEADER} header")
        key_id, digest = match.groups()
        secret = self._accepted().get(key_id)
        if secret is None:
            raise SignatureError("bad_signature", f"signed with unknown key id {key_id!r}")
        types, event_type = _only_header(headers, EVENT_TYPE_HEADER)
        if types != 1 or _text(event_type) != expect:
            raise SignatureError("bad_signature", f"not signed as one {expect} event")
        expected = hmac.new(
            secret, signed_bytes(topic, expect, key, value or b""), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, digest):
            raise SignatureError("bad_signature", f"signature does not match (key {key_id!r})")
        return key_id


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def keys_from_settings(settings: Settings) -> SigningKeys | None:
    """The deployment's keys; None when signing is off. Raises SigningConfigError when it is
    required and no key is set, or a key is unusable."""
    if settings.signing == "off":
        return None
    key = (
        settings.signing_key.get_secret_value()
        if settings.signing_key is not None
        else embedded_stack_key(settings)
    )
    if key is None:
        raise SigningConfigError(
            "no signing key: set LLMOPS_SIGNING_KEY (e.g. `openssl rand -hex 32`) for every "
            "service, or LLMOPS_SIGNING=off to run without signed heartbeats and results"
        )
    return SigningKeys(
        settings.signing_key_id,
        key.encode(),
        tuple(
            (key_id, secret.get_secret_value().encode())
            for key_id, secret in settings.signing_previous_keys.items()
        ),
    )


def embedded_stack_key(settings: Settings) -> str | None:
    """The key `llmops up` made in its data directory, for a client of that stack (the
    bootstrap is the embedded broker on loopback) run from another shell: `llmops prompts`,
    `llmops experiments` sign with it as the stack's services do. Read, never made: a client
    must not invent a key no service knows. None for any other broker, or when there is none.
    """
    servers = [s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()]
    for server in servers:
        host, _, port = server.rpartition(":")
        if host.strip("[]") not in LOOPBACK_HOSTS or port != str(settings.broker_port):
            return None
    path = settings.data_dir / SIGNING_KEY_FILE
    if not servers or not path.is_file():
        return None
    return read_or_create_secret(path, _never_made)


def _never_made() -> str:
    raise SecretFileError("the embedded stack's signing key vanished while being read")
