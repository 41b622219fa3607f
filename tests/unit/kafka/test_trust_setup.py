"""The signing key's setup: the embedded stack makes one (0600) and hands it to every child;
a service without one refuses to start, in one line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from rich.console import Console

from llmops.config import Settings
from llmops.kafka.signing import keys_from_settings
from llmops.local.stack import LocalStack
from llmops.secretfile import (
    SIGNING_KEY_FILE,
    SecretFileError,
    embedded_signing_key,
    read_or_create_secret,
)

REPO = Path(__file__).resolve().parents[3]


def test_a_secret_is_made_once_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "secret"
    made = iter(["first", "second"])
    assert read_or_create_secret(path, lambda: next(made)) == "first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret(path, lambda: next(made)) == "first"
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no staging file left


def test_a_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("leaked\n")
    path.chmod(0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        read_or_create_secret(path, lambda: "new")


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("")
    path.chmod(0o600)
    with pytest.raises(SecretFileError, match="empty"):
        read_or_create_secret(path, lambda: "new")


def test_the_embedded_key_is_256_random_bits(tmp_path: Path) -> None:
    key = embedded_signing_key(tmp_path)
    assert len(bytes.fromhex(key)) == 32
    assert embedded_signing_key(tmp_path) == key
    assert embedded_signing_key(tmp_path / "other") != key


def stack(tmp_path: Path, embedded: bool = True, **settings: object) -> LocalStack:
    return LocalStack(
        Settings(data_dir=tmp_path, **settings),  # type: ignore[arg-type]
        Console(quiet=True),
        embedded=embedded,
    )


def test_the_embedded_stack_gives_its_children_the_data_dirs_key(tmp_path: Path) -> None:
    env = stack(tmp_path, signing_key=None).service_env()
    assert env["LLMOPS_SIGNING_KEY"] == (tmp_path / SIGNING_KEY_FILE).read_text().strip()
    assert env["LLMOPS_SIGNING_KEY_ID"] == "k1"
    child = Settings(
        signing_key=SecretStr(env["LLMOPS_SIGNING_KEY"]),
        signing_previous_keys=json.loads(env["LLMOPS_SIGNING_PREVIOUS_KEYS"]),
    )
    assert keys_from_settings(child) is not None


def test_a_configured_key_and_its_previous_keys_are_passed_on(tmp_path: Path) -> None:
    env = stack(
        tmp_path,
        embedded=False,
        signing_key=SecretStr("c" * 32),
        signing_key_id="k2",
        signing_previous_keys={"k1": SecretStr("p" * 32)},
    ).service_env()
    assert (env["LLMOPS_SIGNING_KEY"], env["LLMOPS_SIGNING_KEY_ID"]) == ("c" * 32, "k2")
    assert json.loads(env["LLMOPS_SIGNING_PREVIOUS_KEYS"]) == {"k1": "p" * 32}
    assert not (tmp_path / SIGNING_KEY_FILE).exists()


def test_without_a_key_an_external_stack_passes_none_and_off_is_passed_on(
    tmp_path: Path,
) -> None:
    assert "LLMOPS_SIGNING_KEY" not in stack(tmp_path, False, signing_key=None).service_env()
    off = stack(tmp_path, True, signing_key=None, signing="off").service_env()
    assert off["LLMOPS_SIGNING"] == "off" and "LLMOPS_SIGNING_KEY" not in off


def test_an_external_stack_without_a_key_stops_before_starting_anything(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot start: no signing key"):
        stack(tmp_path / "data", embedded=False, signing_key=None).start()
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("module", "env", "line"),
    [
        (["services.router"], {}, "no signing key"),
        (
            ["services.inference", "--pool", "local-cpu"],
            {"LLMOPS_SIGNING_KEY": "k" * 32, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs KAFKA_SASL_MECHANISM",
        ),
    ],
)
def test_a_service_refuses_to_start_open_in_one_line(
    module: list[str], env: dict[str, str], line: str, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "KAFKA_"))}
    # A data dir of its own: a checkout that ran `make up` holds the embedded stack's key,
    # which a service of that stack (loopback broker) would rightly sign with.
    done = subprocess.run(
        [sys.executable, "-m", *module],
        cwd=REPO,
        env={**clean, "LLMOPS_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert done.stderr.startswith("cannot start: ") and line in done.stderr


SIGNING_SERVICES = ("services.router", "services.inference", "streams")


def _signs(command: list[str]) -> bool:
    return any(module in command for module in SIGNING_SERVICES)


def test_compose_gives_every_signing_service_a_key() -> None:
    from tests.deploy_kit import COMPOSE_FILE, load_yaml

    services = load_yaml(COMPOSE_FILE)["services"]
    signing = {n: s for n, s in services.items() if _signs([str(c) for c in s.get("command", [])])}
    assert {"router", "streams"} <= set(signing) and len(signing) >= 3
    for name, service in signing.items():
        assert service["environment"].get("LLMOPS_SIGNING_KEY"), name


def test_kubernetes_gives_every_signing_service_the_key_secret() -> None:
    from tests.deploy_kit import K8S_DIR, load_yaml_docs

    docs = [d for path in sorted(K8S_DIR.glob("*.yaml")) for d in load_yaml_docs(path) if d]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert "LLMOPS_SIGNING_KEY" in secrets["llmops-signing"]["stringData"]
    signing = [
        c
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
        if _signs(c.get("command", []))
    ]
    assert len(signing) == 4  # router, streams, the cpu and the gpu pool
    for container in signing:
        refs = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
        assert "llmops-signing" in refs, container["command"]
