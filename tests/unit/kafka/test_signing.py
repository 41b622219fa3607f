"""Record signatures (llmops/kafka/signing.py): what they bind, what they refuse, key rotation."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from pydantic import SecretStr

from llmops.config import Settings
from llmops.kafka.deadletter import Rejected
from llmops.kafka.signing import (
    SIGNATURE_HEADER,
    SignatureError,
    SigningConfigError,
    SigningKeys,
    embedded_stack_key,
    keys_from_settings,
    signed_bytes,
)
from llmops.secretfile import SIGNING_KEY_FILE, write_private_once
from schemas.topics import EVENT_TYPE_HEADER

KEY = b"k" * 32
OTHER = b"o" * 32
TOPIC = "llm.pools.status"
VALUE = b'{"pool":"cpu","capacity":4,"in_flight":0,"healthy":true}'


def keys(key_id: str = "k1", key: bytes = KEY, **previous: bytes) -> SigningKeys:
    return SigningKeys(key_id, key, tuple(previous.items()))


def signed(
    by: SigningKeys,
    topic: str = TOPIC,
    event_type: str = "PoolStatus",
    key: bytes | None = b"cpu",
    value: bytes = VALUE,
) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = [(EVENT_TYPE_HEADER, event_type.encode())]
    headers.append(by.header(topic, headers, key, value))
    return headers


def verify(
    by: SigningKeys,
    headers: list[tuple[str, bytes | None]],
    topic: str = TOPIC,
    key: bytes | None = b"cpu",
    value: bytes | None = VALUE,
    expect: str = "PoolStatus",
) -> str:
    return by.verify(topic, headers, key, value, expect)


def problem(excinfo: pytest.ExceptionInfo[SignatureError]) -> str:
    return excinfo.value.kind


def test_a_record_signed_with_the_key_verifies_and_names_the_key() -> None:
    assert verify(keys(), signed(keys())) == "k1"


def test_the_header_is_v1_key_id_and_the_hmac_sha256_of_the_signed_bytes() -> None:
    header = dict(signed(keys()))[SIGNATURE_HEADER]
    mac = hmac.new(KEY, signed_bytes(TOPIC, "PoolStatus", b"cpu", VALUE), hashlib.sha256)
    assert header == f"v1=k1:{mac.hexdigest()}".encode()


def test_a_signature_error_is_a_rejection_with_its_kind() -> None:
    with pytest.raises(Rejected) as excinfo:
        verify(keys(), [(EVENT_TYPE_HEADER, b"PoolStatus")])
    assert excinfo.value.kind == "unsigned"


def test_no_signature_header_is_unsigned() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), [(EVENT_TYPE_HEADER, b"PoolStatus")])
    assert problem(excinfo) == "unsigned"
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), [])
    assert problem(excinfo) == "unsigned"


def test_a_wrong_key_is_a_bad_signature() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), signed(keys(key=OTHER)))
    assert problem(excinfo) == "bad_signature"
    assert "does not match" in excinfo.value.reason


@pytest.mark.parametrize(
    ("field", "forged"),
    [
        ("value", VALUE.replace(b'"healthy":true', b'"healthy":false')),
        ("value", VALUE + b" "),
        ("key", b"gpu"),
        ("key", None),
        ("topic", "llm.responses"),
    ],
)
def test_changing_what_was_signed_breaks_the_signature(
    field: str, forged: bytes | str | None
) -> None:
    headers = signed(keys())
    args: dict[str, object] = {"topic": TOPIC, "key": b"cpu", "value": VALUE, field: forged}
    with pytest.raises(SignatureError) as excinfo:
        keys().verify(
            str(args["topic"]),
            headers,
            args["key"],  # type: ignore[arg-type]
            args["value"],  # type: ignore[arg-type]
            "PoolStatus",
        )
    assert problem(excinfo) == "bad_signature"


def test_a_record_signed_as_another_event_type_is_refused() -> None:
    # A genuine signed result replayed onto the status topic, headers and all.
    headers = signed(keys(), event_type="InferenceResult")
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), headers)
    assert problem(excinfo) == "bad_signature"
    assert "PoolStatus" in excinfo.value.reason


def test_changing_the_event_type_header_after_signing_is_refused() -> None:
    relabelled = [
        (h, b"InferenceResult" if h == EVENT_TYPE_HEADER else v) for h, v in signed(keys())
    ]
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), relabelled, expect="InferenceResult")
    assert problem(excinfo) == "bad_signature"


def test_two_event_type_headers_are_refused() -> None:
    headers = [*signed(keys()), (EVENT_TYPE_HEADER, b"PoolStatus")]
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), headers)
    assert problem(excinfo) == "bad_signature"


def test_two_signature_headers_are_refused_even_if_one_is_good() -> None:
    good = signed(keys())
    headers = [*good, (SIGNATURE_HEADER, dict(signed(keys(key=OTHER)))[SIGNATURE_HEADER])]
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), headers)
    assert problem(excinfo) == "bad_signature"


@pytest.mark.parametrize(
    "header",
    [
        b"",
        None,
        b"v1=k1:",
        b"v2=k1:" + b"0" * 64,
        b"v1=k1:" + b"0" * 63,
        b"v1=k1:" + b"0" * 65,
        b"v1=k1:" + b"G" * 64,
        b"v1=k1:" + b"A" * 64,  # hex digits are lower case
        b"v1=:" + b"0" * 64,
        b"v1=k/1:" + b"0" * 64,
        b"\xff\xfe",
        b"v1=k1:" + b"0" * 64 + b"\n",
    ],
)
def test_malformed_signature_headers_are_bad_signatures(header: bytes | None) -> None:
    headers = [(EVENT_TYPE_HEADER, b"PoolStatus"), (SIGNATURE_HEADER, header)]
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), headers)
    assert problem(excinfo) == "bad_signature"


def test_an_unknown_key_id_is_a_bad_signature() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify(keys(), signed(keys(key_id="k9")))
    assert problem(excinfo) == "bad_signature"
    assert "k9" in excinfo.value.reason


def test_a_known_key_id_with_another_keys_mac_is_refused() -> None:
    # The id names which key to check with: claiming k0 with k1's MAC must not pass.
    rotated = keys(key_id="k1", key=KEY, k0=OTHER)
    header = dict(signed(keys(key_id="k1", key=KEY)))[SIGNATURE_HEADER]
    claimed = header.replace(b"v1=k1:", b"v1=k0:")  # type: ignore[union-attr]
    with pytest.raises(SignatureError):
        verify(rotated, [(EVENT_TYPE_HEADER, b"PoolStatus"), (SIGNATURE_HEADER, claimed)])


def test_rotation_previous_keys_verify_and_new_records_use_the_current_key() -> None:
    old = keys(key_id="k1", key=OTHER)
    rotated = keys(key_id="k2", key=KEY, k1=OTHER)
    assert verify(rotated, signed(old)) == "k1"
    assert verify(rotated, signed(rotated)) == "k2"
    assert dict(signed(rotated))[SIGNATURE_HEADER].startswith(b"v1=k2:")  # type: ignore[union-attr]
    # Once the old key is dropped, its records no longer pass.
    with pytest.raises(SignatureError):
        verify(keys(key_id="k2", key=KEY), signed(old))


def test_a_missing_key_and_an_empty_key_sign_differently() -> None:
    assert signed_bytes(TOPIC, "PoolStatus", None, VALUE) != signed_bytes(
        TOPIC, "PoolStatus", b"", VALUE
    )


def test_field_boundaries_cannot_be_shifted() -> None:
    # Without length prefixes "ab"+"c" and "a"+"bc" would sign the same bytes.
    assert signed_bytes("t", "ab", b"c", b"v") != signed_bytes("t", "a", b"bc", b"v")
    assert signed_bytes("t", "e", b"ab", b"c") != signed_bytes("t", "e", b"a", b"bc")


def test_an_absent_value_verifies_as_empty_bytes() -> None:
    headers = signed(keys(), value=b"")
    assert verify(keys(), headers, value=None) == "k1"


@pytest.mark.parametrize(
    ("key_id", "key", "previous"),
    [
        ("k1", b"short", ()),
        ("", KEY, ()),
        ("bad id", KEY, ()),
        ("k" * 65, KEY, ()),
        ("k1", KEY, (("k1", OTHER),)),
        ("k1", KEY, (("k0", b"short"),)),
    ],
)
def test_unusable_keys_are_refused(
    key_id: str, key: bytes, previous: tuple[tuple[str, bytes], ...]
) -> None:
    with pytest.raises(SigningConfigError):
        SigningKeys(key_id, key, previous)


def test_the_key_never_shows_in_a_repr() -> None:
    assert KEY.decode() not in repr(keys(k0=OTHER))
    assert OTHER.decode() not in repr(keys(k0=OTHER))


def test_settings_without_a_key_refuse_unless_signing_is_off(tmp_path: Path) -> None:
    with pytest.raises(SigningConfigError, match="LLMOPS_SIGNING_KEY"):
        keys_from_settings(Settings(signing_key=None, data_dir=tmp_path))
    assert keys_from_settings(Settings(signing_key=None, signing="off")) is None


def embedded(tmp_path: Path, bootstrap: str, key: str | None = "s" * 64) -> Settings:
    """Settings of a client beside an embedded stack whose data dir holds `key`."""
    if key is not None:
        write_private_once(tmp_path / SIGNING_KEY_FILE, key + "\n")
    return Settings(
        signing_key=None, data_dir=tmp_path, broker_port=19092, kafka_bootstrap_servers=bootstrap
    )


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:19092", "localhost:19092", "[::1]:19092"])
def test_a_client_of_the_embedded_broker_signs_with_the_stacks_key(
    tmp_path: Path, bootstrap: str
) -> None:
    found = keys_from_settings(embedded(tmp_path, bootstrap))
    assert found is not None and found.key == b"s" * 64


@pytest.mark.parametrize(
    "bootstrap",
    ["10.0.0.5:19092", "127.0.0.1:9092", "127.0.0.1:19092,kafka.example:9092", ""],
)
def test_no_other_broker_gets_the_embedded_stacks_key(tmp_path: Path, bootstrap: str) -> None:
    assert embedded_stack_key(embedded(tmp_path, bootstrap)) is None


def test_a_client_never_makes_a_key_no_service_knows(tmp_path: Path) -> None:
    with pytest.raises(SigningConfigError, match="LLMOPS_SIGNING_KEY"):
        keys_from_settings(embedded(tmp_path, "127.0.0.1:19092", key=None))
    assert not (tmp_path / SIGNING_KEY_FILE).exists()


def test_an_explicit_key_wins_over_the_embedded_one(tmp_path: Path) -> None:
    settings = embedded(tmp_path, "127.0.0.1:19092").model_copy(
        update={"signing_key": SecretStr("x" * 40)}
    )
    found = keys_from_settings(settings)
    assert found is not None and found.key == b"x" * 40


def test_settings_give_the_current_and_previous_keys() -> None:
    settings = Settings(
        signing_key=SecretStr("n" * 32),
        signing_key_id="k2",
        signing_previous_keys={"k1": SecretStr("o" * 32)},
    )
    found = keys_from_settings(settings)
    assert found is not None
    assert (found.key_id, found.key, found.previous) == ("k2", b"n" * 32, (("k1", b"o" * 32),))


def test_settings_read_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_SIGNING_KEY", "e" * 40)
    monkeypatch.setenv("LLMOPS_SIGNING_KEY_ID", "env-key")
    monkeypatch.setenv("LLMOPS_SIGNING_PREVIOUS_KEYS", '{"old": "' + "p" * 20 + '"}')
    found = keys_from_settings(Settings())
    assert found is not None
    assert (found.key_id, found.key, found.previous) == (
        "env-key",
        b"e" * 40,
        (("old", b"p" * 20),),
    )
