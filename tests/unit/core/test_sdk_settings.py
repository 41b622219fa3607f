"""The SDK takes its addresses and fetch waits from the settings it is given, else from the
environment it runs in (read when the client is made, not from a cached global)."""

import pytest
from pydantic import SecretStr

from llmops.config import Settings
from llmops.kafka.security import KafkaSecurity
from llmops.sdk import LLMOpsClient


async def test_from_settings_uses_the_settings_given() -> None:
    settings = Settings(
        kafka_bootstrap_servers="given:9092",
        fetch_max_wait_ms=11,
        fetch_idle_wait_ms=222,
        fetch_quiet_after_s=3.5,
    )
    client = LLMOpsClient.from_settings(settings, app="shop", timeout_s=9.0)
    assert client.bootstrap_servers == "given:9092"
    assert (client._fetch_max_wait_ms, client._fetch_idle) == (11, (222, 3.5))
    assert (client.app, client.timeout_s) == ("shop", 9.0)


async def test_the_plain_constructor_reads_the_environment_when_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("LLMOPS_FETCH_IDLE_WAIT_MS", "321")
    client = LLMOpsClient(app="support")
    assert client.bootstrap_servers == "env:9092" and client._fetch_idle[0] == 321
    explicit = LLMOpsClient("mine:9092", fetch_max_wait_ms=1)
    assert (explicit.bootstrap_servers, explicit._fetch_max_wait_ms) == ("mine:9092", 1)


async def test_security_and_reply_replication_come_from_the_settings_given() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="shop",
        kafka_sasl_password=SecretStr("pw"),
        topic_replication_factor=3,
    )
    client = LLMOpsClient.from_settings(settings, app="shop")
    assert client._security == KafkaSecurity.from_settings(settings)
    assert client._replication_factor == 3
    assert client._producer._config.security == client._security
    assert client._producer._config.signer is None  # an app never holds the deployment key
    await client._producer.stop()


async def test_the_plain_constructor_reads_security_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "sdk-app")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("LLMOPS_TOPIC_REPLICATION_FACTOR", "2")
    client = LLMOpsClient("mine:9092", app="support")
    assert (client._security.security_protocol, client._security.sasl_username) == (
        "SASL_PLAINTEXT",
        "sdk-app",
    )
    assert client._replication_factor == 2
    await client._producer.stop()
