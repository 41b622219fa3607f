"""The local stack's children get its whole settings, however they were given to it."""

import os
import stat
from pathlib import Path

import pytest
from rich.console import Console

from llmops.config import CONFIG_FILE_ENV, SETTINGS_FILE_ENV, FakePool, Settings
from llmops.local.stack import LocalStack

YAML = """
pools:
  - {name: slow, engine: fake, model: fake, fake_ttft_ms: 40, capacity: 3}
  - {name: big, engine: vllm, model: m, vllm: {tensor_parallel_size: 2}}
routing:
  cooldown_s: 7
  shifts: [{name: canary, source: slow, target: big, percent: 5}]
store_text: none
retention_days: 9
fetch_idle_wait_ms: 123
kafka_sasl_password: yaml-sasl-password
store_password: yaml-store-password
"""


def child_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """The child's environment: what we pass on top of ours, nothing of the YAML file."""
    monkeypatch.delenv(CONFIG_FILE_ENV)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_settings_given_only_in_yaml_reach_the_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "llmops.yaml"
    config.write_text(YAML)
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    parent = Settings(data_dir=tmp_path / "data")
    stack = LocalStack(parent, Console(quiet=True), embedded=True)
    env = stack.service_env()
    path = Path(env[SETTINGS_FILE_ENV])
    assert path.parent == (tmp_path / "data").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the secrets
    child_env(monkeypatch, env)
    child = Settings()
    assert child == stack.child_settings()
    slow = child.pool("slow")
    assert isinstance(slow, FakePool) and (slow.fake_ttft_ms, slow.capacity) == (40, 3)
    assert child.routing.cooldown_s == 7 and child.routing.shifts[0].percent == 5
    assert (child.store_text, child.retention_days, child.fetch_idle_wait_ms) == ("none", 9, 123)
    assert child.store_password == "yaml-store-password"
    assert child.kafka_sasl_password is not None
    assert child.kafka_sasl_password.get_secret_value() == "yaml-sasl-password"
    # the stack's own choices: its addresses and its resolved data dir
    assert child.kafka_bootstrap_servers == f"127.0.0.1:{parent.broker_port}"
    assert child.data_dir == (tmp_path / "data").resolve()


def test_the_stacks_addresses_beat_what_the_children_inherit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    monkeypatch.setenv("LLMOPS_SINK_BATCH_SIZE", "77")  # ours: the children keep it
    stack = LocalStack(Settings(data_dir=tmp_path), Console(quiet=True), embedded=True)
    env = stack.service_env()
    monkeypatch.setattr(os, "environ", {**os.environ, **env})
    child = Settings()
    assert child.kafka_bootstrap_servers == stack.addresses.kafka != "elsewhere:9092"
    assert child.sink_batch_size == 77
    # the embedded stack's generated key reaches them through the file too
    assert child.signing_key is not None and child.signing_key == stack.child_settings().signing_key


def test_a_missing_settings_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SETTINGS_FILE_ENV, "/nonexistent/settings.json")
    with pytest.raises(FileNotFoundError, match=SETTINGS_FILE_ENV):
        Settings()
