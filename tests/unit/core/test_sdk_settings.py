"""The SDK takes its addresses and fetch waits from the settings it is given, else from the
environment it runs in (read when the client is made, not from a cached global)."""

import pytest

from llmops.config import Settings
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
