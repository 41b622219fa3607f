from pathlib import Path

import pytest
from pydantic import ValidationError

from llmops.config import (
    POOL_ADAPTER,
    FakePool,
    Settings,
    TransformersPool,
    VllmOptions,
    VllmPool,
)


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
        Settings(pools=[TransformersPool(name="a"), TransformersPool(name="a")])
    with pytest.raises(ValidationError):
        Settings(pools=[])
    with pytest.raises(ValidationError):
        Settings(max_message_bytes=10)
    with pytest.raises(ValidationError):
        TransformersPool(name="bad name")


def test_a_pool_is_the_kind_its_engine_names_transformers_when_unnamed() -> None:
    pools = [{"name": "t"}, {"name": "f", "engine": "fake"}, {"name": "v", "engine": "vllm"}]
    s = Settings.model_validate({"pools": pools})
    assert [type(p) for p in s.pools] == [TransformersPool, FakePool, VllmPool]
    assert [p.engine for p in s.pools] == ["transformers", "fake", "vllm"]
    assert isinstance(Settings().pools[0], TransformersPool)  # the default pool


def test_each_engine_has_its_own_defaults() -> None:
    fake = FakePool(name="f")
    assert (fake.fake_ttft_ms, fake.fake_tpot_ms) == (0.0, 0.0)
    assert TransformersPool(name="t").device == "cpu"
    assert VllmPool(name="v").vllm == VllmOptions()
    # only its own options: a pool carries no other engine's fields
    assert "device" not in FakePool.model_fields and "vllm" not in TransformersPool.model_fields


@pytest.mark.parametrize(
    ("pool", "refused"),
    [
        ({"engine": "fake", "device": "cuda"}, "device \\(transformers pools only\\)"),
        ({"engine": "fake", "vllm": {}}, "vllm \\(vllm pools only\\)"),
        ({"fake_ttft_ms": 5}, "fake_ttft_ms \\(fake pools only\\)"),
        ({"engine": "transformers", "vllm": {"seed": 1}}, "vllm \\(vllm pools only\\)"),
        ({"engine": "vllm", "fake_tpot_ms": 1}, "fake_tpot_ms \\(fake pools only\\)"),
        ({"engine": "vllm", "device": "cuda:1"}, "device \\(transformers pools only\\)"),
    ],
)
def test_an_option_of_another_engine_is_refused(pool: dict[str, object], refused: str) -> None:
    engine = pool.get("engine", "transformers")
    with pytest.raises(ValidationError, match=f"not an option of a {engine} pool: {refused}"):
        Settings.model_validate({"pools": [{"name": "p", **pool}]})
    with pytest.raises(ValidationError, match="not an option"):
        POOL_ADAPTER.validate_python({"name": "p", **pool})


def test_an_unknown_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_POOLS", '[{"name": "a", "engine": "tgi"}]')
    with pytest.raises(ValidationError, match="'fake', 'transformers', 'vllm'"):
        Settings()


def test_a_pool_dumped_and_read_back_is_the_same_pool() -> None:
    pools = [
        FakePool(name="f", fake_ttft_ms=3),
        TransformersPool(name="t", device="cuda:1"),
        VllmPool(name="v", vllm=VllmOptions(tensor_parallel_size=2)),
    ]
    for pool in pools:
        assert POOL_ADAPTER.validate_json(pool.model_dump_json()) == pool
