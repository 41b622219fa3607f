"""SASL/TLS settings reach every Kafka client we create (llmops/kafka/security.py).

No broker here: the clients are built, not started, and their configuration is read back.
(Tansu 0.6.0 cannot be given a SCRAM user for a test: `tansu user create` is itself refused
once `--authentication` is on, and a user made before on S3 storage was unknown to it after
the restart; see the README's trust boundaries.)
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
import pytest
from pydantic import SecretStr

from llmops.config import Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import ConsumerConfig, ConsumerLoop
from llmops.kafka.producer import Producer
from llmops.kafka.security import KafkaSecurity, KafkaSecurityError
from llmops.kafka.signing import SigningConfigError
from llmops.kafka.tail import TopicTail
from schemas.topics import TopicSpec
from streams.worker import WorkerOptions, faust_settings

SCRAM = KafkaSecurity(
    security_protocol="SASL_PLAINTEXT",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="router",
    sasl_password="s3cret",
)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A self-signed CA certificate and a client certificate and key (openssl)."""
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "client.pem", root / "client.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=llmops-test", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, cert, key


def client_config(client: Any) -> tuple[object, ...]:
    """What an aiokafka client (producer's or consumer's) will authenticate with."""
    return (
        client._security_protocol,
        client._sasl_mechanism,
        client._sasl_plain_username,
        client._sasl_plain_password,
        client._ssl_context,
    )


@pytest.fixture
async def producer() -> AsyncIterator[Producer]:
    producer = Producer(BusConfig("127.0.0.1:1", security=SCRAM))
    yield producer
    await producer.stop()


def test_settings_take_the_standard_kafka_variable_names(
    monkeypatch: pytest.MonkeyPatch, tls_files: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = tls_files
    for name, value in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": "streams",
        "KAFKA_SASL_PASSWORD": "pw",
        "KAFKA_SSL_CAFILE": str(ca),
        "KAFKA_SSL_CERTFILE": str(cert),
        "KAFKA_SSL_KEYFILE": str(key),
    }.items():
        monkeypatch.setenv(name, value)
    security = KafkaSecurity.from_settings(Settings())
    assert security == KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "streams", "pw", ca, cert, key)
    assert "pw" not in repr(security) and "pw" not in repr(Settings())


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    assert KafkaSecurity.from_settings(Settings()).client_kwargs() == {
        "security_protocol": "PLAINTEXT"
    }
    assert KafkaSecurity().faust_credentials() is None


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "KAFKA_SASL_USERNAME",
        ),
        ({"sasl_username": "u"}, "SASL settings are given"),
        ({"ssl_cafile": Path("/ca.pem")}, "TLS files are given"),
        (
            {"security_protocol": "SSL", "ssl_keyfile": Path("/k.pem")},
            "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE",
        ),
    ],
)
def test_contradicting_settings_are_refused_with_the_variable_to_fix(
    fields: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=complaint):
        KafkaSecurity(**fields)


async def test_the_producer_authenticates_with_sasl(producer: Producer) -> None:
    assert client_config(producer._producer.client) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "router",
        "s3cret",
        None,
    )


async def test_the_consumer_loop_authenticates_with_sasl(producer: Producer) -> None:
    loop = ConsumerLoop(
        BusConfig("127.0.0.1:1", security=SCRAM),
        ConsumerConfig(topics=["t"], group_id="g", service="s"),
        lambda record: _nothing(),
        producer,
    )
    assert client_config(loop.consumer._client)[:4] == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "router",
        "s3cret",
    )


async def _nothing() -> None:
    return None


async def test_a_topic_tail_authenticates_with_sasl() -> None:
    tail = TopicTail("127.0.0.1:1", "t", lambda record: None, security=SCRAM)
    assert client_config(tail._consumer._client)[:2] == ("SASL_PLAINTEXT", "SCRAM-SHA-512")


async def test_clients_given_no_security_connect_plaintext_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The library never reads the process's settings behind its caller's back.
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "sdk-app")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw")
    bus = BusConfig("127.0.0.1:1")
    assert bus.signer is None
    producer = Producer(bus)
    tail = TopicTail("127.0.0.1:1", "t", lambda record: None)
    for client in (producer._producer.client, tail._consumer._client):
        protocol, _, username, *_ = client_config(client)  # (aiokafka's mechanism: PLAIN)
        assert (protocol, username) == ("PLAINTEXT", None)
    await producer.stop()


async def test_a_bus_from_settings_has_their_security_and_signing_key() -> None:
    settings = Settings(
        kafka_bootstrap_servers="given:9092",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="router",
        kafka_sasl_password=SecretStr("pw"),
        signing_key=SecretStr("s" * 32),
        signing_key_id="k7",
    )
    bus = BusConfig.from_settings(settings, client_id="llmops-router", linger_ms=5)
    assert (bus.bootstrap_servers, bus.client_id, bus.linger_ms) == (
        "given:9092",
        "llmops-router",
        5,
    )
    assert bus.signer is not None and bus.signer.key_id == "k7"
    producer = Producer(bus)
    assert client_config(producer._producer.client)[:4] == (
        "SASL_PLAINTEXT",
        "PLAIN",
        "router",
        "pw",
    )
    await producer.stop()


def test_a_bus_from_settings_needs_a_key_unless_signing_is_off(tmp_path: Path) -> None:
    with pytest.raises(SigningConfigError, match="no signing key"):
        BusConfig.from_settings(Settings(signing_key=None, data_dir=tmp_path))
    assert BusConfig.from_settings(Settings(signing_key=None, signing="off")).signer is None


async def test_tls_builds_a_verifying_context_with_the_client_certificate(
    tls_files: tuple[Path, Path, Path],
) -> None:
    ca, cert, key = tls_files
    security = KafkaSecurity(
        security_protocol="SSL", ssl_cafile=ca, ssl_certfile=cert, ssl_keyfile=key
    )
    context = security.client_kwargs()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "llmops-test"),),)]
    producer = Producer(BusConfig("127.0.0.1:1", security=security))
    protocol, *_, producer_context = client_config(producer._producer.client)
    assert protocol == "SSL" and isinstance(producer_context, ssl.SSLContext)
    await producer.stop()


def test_a_missing_certificate_file_fails_at_once() -> None:
    security = KafkaSecurity(security_protocol="SSL", ssl_cafile=Path("/no/such/ca.pem"))
    with pytest.raises(FileNotFoundError):
        security.client_kwargs()


def test_the_faust_worker_gets_sasl_credentials() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="streams",
        kafka_sasl_password=SecretStr("pw"),
    )
    credentials = faust_settings(settings, WorkerOptions())["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("streams", "pw")
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_the_faust_worker_gets_tls_credentials(tls_files: tuple[Path, Path, Path]) -> None:
    ca, _, _ = tls_files
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca)
    credentials = faust_settings(settings, WorkerOptions())["broker_credentials"]
    assert isinstance(credentials, faust.SSLCredentials)
    assert isinstance(credentials.context, ssl.SSLContext)


class AdminRecorder:
    """kafka-python's admin client connects as it is built: a stand-in that records what it
    was built with and asked to create."""

    built: dict[str, Any]
    created: list[Any]

    def __init__(self, **kwargs: Any) -> None:
        AdminRecorder.built = kwargs
        AdminRecorder.created = []

    def list_topics(self) -> list[str]:
        return []

    def create_topics(self, topics: list[Any]) -> None:
        AdminRecorder.created.extend(topics)

    def close(self) -> None:
        pass


def test_the_admin_client_gets_the_callers_security_and_replication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llmops.kafka.topics as topics

    monkeypatch.setattr(topics, "KafkaAdminClient", AdminRecorder)
    spec = TopicSpec("t", 2, "key", "test", ())
    assert topics.ensure_topics("127.0.0.1:1", [spec], replication_factor=3, security=SCRAM) == [
        "t"
    ]
    assert AdminRecorder.built == {
        "bootstrap_servers": "127.0.0.1:1",
        "client_id": "llmops-admin",
        **SCRAM.client_kwargs(),
    }
    assert [(t.name, t.replication_factor) for t in AdminRecorder.created] == [("t", 3)]


def test_the_admin_client_defaults_to_one_plaintext_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llmops.kafka.topics as topics

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")  # not read
    monkeypatch.setenv("LLMOPS_TOPIC_REPLICATION_FACTOR", "3")  # not read
    monkeypatch.setattr(topics, "KafkaAdminClient", AdminRecorder)
    topics.ensure_topics("127.0.0.1:1", [TopicSpec("t", 1, "key", "test", ())])
    assert AdminRecorder.built["security_protocol"] == "PLAINTEXT"
    assert [t.replication_factor for t in AdminRecorder.created] == [1]
