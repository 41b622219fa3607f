"""The deployment key of the tests, and signed headers for records a test writes by hand.

tests/conftest.py puts the key in the environment before anything reads settings, so every
Settings, every producer and every service subprocess of a test run signs and verifies with
it, as the services of one deployment do.
"""

from __future__ import annotations

from llmops.kafka.signing import SigningKeys
from schemas.topics import CONTENT_TYPE_HEADER, EVENT_TYPE_HEADER, JSON_CONTENT_TYPE

TEST_SIGNING_KEY = "tests-only-signing-key-5f0c2a9e4b7d1c36"
TEST_KEY_ID = "k1"  # Settings' default id


def test_keys() -> SigningKeys:
    return SigningKeys(TEST_KEY_ID, TEST_SIGNING_KEY.encode())


def signed_headers(
    topic: str,
    key: bytes | None,
    value: bytes,
    event_type: str,
    extra: list[tuple[str, bytes]] | None = None,
    keys: SigningKeys | None = None,
) -> list[tuple[str, bytes]]:
    """Headers our producers put on a signed `event_type` record (plus `extra`)."""
    headers: list[tuple[str, bytes]] = [
        (CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),
        (EVENT_TYPE_HEADER, event_type.encode()),
        *(extra or []),
    ]
    headers.append((keys or test_keys()).header(topic, headers, key, value))
    return headers
