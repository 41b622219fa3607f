from pathlib import Path

import pytest
from pydantic import ValidationError

from llmops.config import PoolConfig, Settings


def test_standard_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CLICKHOUSE_URL", "https://ch.example:8443/llmops")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    s = Settings()
    assert s.kafka_bootstrap_servers == "kafka:9092"
    assert s.clickhouse_url == "https://ch.example:8443/llmops"
    assert s.otel_exporter_otlp_endpoint == "http://collector:4318"


def test_pools_from_json_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_POOLS", '[{"name": "a", "engine": "fake", "capacity": 4}]')
    s = Settings()
    assert [p.name for p in s.pools] == ["a"]
    assert s.pool("a").capacity == 4
    with pytest.raises(KeyError, match="no pool named"):
        s.pool("b")


def test_yaml_config_file_with_env_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "llmops.yaml"
    cfg.write_text("store_port: 9999\npools:\n  - {name: y, engine: fake}\nbroker_port: 1111\n")
    monkeypatch.setenv("LLMOPS_CONFIG", str(cfg))
    monkeypatch.setenv("LLMOPS_BROKER_PORT", "2222")
    s = Settings()
    assert s.store_port == 9999
    assert s.pools[0].name == "y"
    assert s.broker_port == 2222  # env beats the file


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_CONFIG", "/nonexistent/llmops.yaml")
    with pytest.raises(FileNotFoundError, match="LLMOPS_CONFIG"):
        Settings()


def test_bounds_and_uniqueness() -> None:
    with pytest.raises(ValidationError, match="unique"):
        Settings(pools=[PoolConfig(name="a"), PoolConfig(name="a")])
    with pytest.raises(ValidationError):
        Settings(pools=[])
    with pytest.raises(ValidationError):
        Settings(max_message_bytes=10)
    with pytest.raises(ValidationError):
        PoolConfig(name="bad name")
