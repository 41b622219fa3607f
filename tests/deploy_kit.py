"""Helpers for the deployment-file tests (tests/unit/deploy/test_*.py): load the files, and
check a container's command line and environment against this repository's own code."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from llmops.config import CONFIG_FILE_ENV, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S_DIR = ROOT / "infra" / "k8s"

# Settings that the deployment files already set and that the code does not read yet: each is
# a change requested from the owners of llmops/ (see the deployment work's report). Remove a
# name once its Settings field exists; the test below then holds it like any other.
REQUESTED_SETTINGS = frozenset({})
# Read straight from the environment outside Settings.
LOG_LEVEL_ENV = "LLMOPS_LOG_LEVEL"  # llmops/runtime.py, streams/__main__.py


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


# ---------------------------------------------------------------- environment


def settings_env_names() -> set[str]:
    """Every environment variable name Settings reads (its fields, with their aliases)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names = {CONFIG_FILE_ENV}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def known_llmops_env() -> set[str]:
    from streams.__main__ import APP_ID_ENV

    return settings_env_names() | {LOG_LEVEL_ENV, APP_ID_ENV}


def unknown_llmops_env(env: Mapping[str, str]) -> list[str]:
    """LLMOPS_* names that nothing reads (a typo, or a setting that was renamed)."""
    known = known_llmops_env() | REQUESTED_SETTINGS
    return sorted(name for name in env if name.startswith("LLMOPS_") and name not in known)


def settings_under(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Settings:
    """Settings as a container with exactly `env` would build them (validation included)."""
    for name in list(os.environ):
        if name.startswith(("LLMOPS_", "KAFKA_", "CLICKHOUSE_", "OTEL_")):
            monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return Settings()


# ---------------------------------------------------------------- commands


@contextmanager
def _argv(argv: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved


def _check_python_module(module: str, args: Sequence[str]) -> None:
    assert importlib.util.find_spec(module) is not None, f"no module {module!r}"
    main_name = f"{module}.__main__"
    assert importlib.util.find_spec(main_name) is not None, f"`python -m {module}`: no __main__"
    main = importlib.import_module(main_name)
    parse_args = getattr(main, "parse_args", None)
    if parse_args is None:
        assert not args, f"`python -m {module}` takes no arguments, got {list(args)}"
        return
    try:
        if inspect.signature(parse_args).parameters:
            parse_args(list(args))
        else:  # the parser reads sys.argv itself
            with _argv([module, *args]):
                parse_args()
    except SystemExit as exit_:
        raise AssertionError(f"`python -m {module}` rejects {list(args)} ({exit_})") from None


def _check_llmops_cli(args: Sequence[str]) -> None:
    import typer

    from llmops.cli.app import app

    scripts = pyproject()["project"]["scripts"]
    assert scripts.get("llmops") == "llmops.cli.app:app", "the `llmops` console script moved"
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="llmops")
    try:
        name, command, rest = group.resolve_command(ctx, list(args))  # type: ignore[attr-defined]
        assert command is not None and name is not None
        command.make_context(name, rest, parent=ctx)  # parses options, runs nothing
    except Exception as error:  # typer's own click raises its UsageError family
        raise AssertionError(f"`llmops {' '.join(args)}`: {error}") from None


def check_command(argv: Sequence[str]) -> None:
    """Fail unless `argv` runs one of this repo's entry points with arguments it accepts."""
    assert argv, "empty command"
    if list(argv[:2]) == ["python", "-m"]:
        assert len(argv) >= 3, f"`python -m` without a module: {list(argv)}"
        _check_python_module(argv[2], argv[3:])
    elif argv[0] == "llmops":
        _check_llmops_cli(argv[1:])
    else:
        raise AssertionError(f"not an entry point of this repo: {list(argv)}")


def option(argv: Sequence[str], name: str) -> str | None:
    """The value of `--name VALUE` (or `--name=VALUE`) in a command line."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def metrics_port(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """The port a service serves /metrics on, as its entry point decides it."""
    port = option(argv, "--metrics-port")
    if port is not None:
        return int(port)
    if list(argv[:3]) == ["python", "-m", "services.router"]:
        # services/router/__main__.py: LLMOPS_METRICS_BASE_PORT + 1 (0: off)
        base = int(env.get("LLMOPS_METRICS_BASE_PORT", "0"))
        return base + 1 if base else None
    return None


PROBE_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/metrics")


def probed_port(command: Sequence[str]) -> int | None:
    """The port an exec probe / healthcheck reads /metrics from."""
    found = PROBE_URL.search(" ".join(command))
    return int(found.group(1)) if found else None
