"""The Dockerfile installs what pyproject.toml pins, the way the Makefile does, copies every
package the distribution declares, and runs as a non-root user. (No Docker engine here: the
image is not built; its requirement-splitting step is run on its own below.)"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

import llmops
import llmops.clickhouse.client
from tests.deploy_kit import DOCKERFILE, ROOT, pyproject

TEXT = DOCKERFILE.read_text()
MAKEFILE = (ROOT / "Makefile").read_text()
STAGE = re.compile(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", re.M | re.I)


def stages() -> dict[str, str]:
    """Stage name -> its instructions (the text up to the next FROM)."""
    found = list(STAGE.finditer(TEXT))
    return {
        (m.group(2) or m.group(1)): TEXT[
            m.end() : found[i + 1].start() if i + 1 < len(found) else None
        ]
        for i, m in enumerate(found)
    }


STAGES = stages()
TARGETS = ("cpu", "cuda")


def arg_default(name: str) -> str:
    found: list[str] = re.findall(rf"^ARG {name}=(\S+)$", TEXT, re.M)
    assert found and len(set(found)) == 1, f"ARG {name}: {found}"
    return found[0]


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().lstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's matching, enough for these patterns: anchored globs, `**/` for any depth."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("!"):
            continue
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatch(part, tail) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_default_target_is_cpu_on_python_311_slim() -> None:
    assert list(STAGES)[-1] == "cpu", "`docker build .` must give the CPU image"
    assert set(TARGETS) <= set(STAGES)
    assert re.match(r"python:3\.11-slim", arg_default("PYTHON_IMAGE"))


@pytest.mark.parametrize("target", TARGETS)
def test_targets_run_as_the_non_root_user_they_create(target: str) -> None:
    users = re.findall(r"^USER\s+(\S+)$", STAGES[target], re.M)
    assert users, f"{target} runs as root"
    uid, _, gid = users[-1].partition(":")
    assert uid not in {"0", "root"} and gid not in {"0", "root"}
    assert f"--uid {uid}" in STAGES["base"] and f"--gid {gid}" in STAGES["base"]


@pytest.mark.parametrize("target", TARGETS)
def test_faust_is_installed_without_deps_after_everything_else(target: str) -> None:
    body = STAGES[target]
    faust = body.find('pip install --no-deps "faust-streaming==${FAUST_VERSION}"')
    requirements = body.find("-r /tmp/requirements")
    assert 0 <= requirements < faust
    assert re.search(
        r"--no-deps faust-streaming==" + re.escape(arg_default("FAUST_VERSION")), MAKEFILE
    )


def test_pip_is_the_makefiles_pin() -> None:
    assert f"pip=={arg_default('PIP_VERSION')}" in MAKEFILE


def test_cuda_target_pins_vllm_and_cpu_target_takes_cpu_torch() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", arg_default("VLLM_VERSION"))
    assert 'pip install "vllm==${VLLM_VERSION}" -r /tmp/requirements-cuda.txt' in STAGES["cuda"]
    assert "--index-url" in STAGES["cpu"] and "/whl/cpu" in arg_default("TORCH_INDEX_URL")
    assert "-r /tmp/requirements-torch.txt" in STAGES["cpu"]


def test_requirement_files_split_pyprojects_pins(tmp_path: Path) -> None:
    script = re.search(r"RUN python - <<'EOF'\n(.*?)\nEOF\n", TEXT, re.S)
    assert script is not None
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    exec(compile(script.group(1).replace("/tmp/", f"{tmp_path}/"), "Dockerfile", "exec"), {})

    def read(name: str) -> list[str]:
        return (tmp_path / name).read_text().split()

    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    pins = [
        *project["dependencies"],
        *(d for x in ("platform", "inference", "deep", "embeddings", "local") for d in extras[x]),
    ]
    deps = list(
        dict.fromkeys(d.replace(" ", "") for d in pins if not d.startswith("llmops-streams["))
    )
    assert read("requirements.txt") == deps
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", d) for d in deps), "unpinned"
    torch = read("requirements-torch.txt")
    assert len(torch) == 1 and torch[0].startswith("torch==")
    cuda = read("requirements-cuda.txt")
    left_to_vllm = sorted(set(deps) - set(cuda))
    assert [d.split("==")[0] for d in left_to_vllm] == ["torch", "transformers"]


def test_every_declared_package_and_the_migrations_are_copied() -> None:
    find = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in find}
    copies = dict(re.findall(r"^COPY (\S+) (/app/\S+)$", STAGES["source"], re.M))
    for package in packages:
        assert copies.get(package) == f"/app/{package}", f"package {package} is not copied"
    # The migrations are package data inside llmops, so a plain (non-editable) install has them.
    migrations = llmops.clickhouse.client.MIGRATIONS_DIR
    assert migrations.is_relative_to(Path(llmops.__file__).parent)
    package_data = pyproject()["tool"]["setuptools"]["package-data"]["llmops.clickhouse"]
    assert "migrations/*.sql" in package_data
    for target in TARGETS:
        assert "pip install --no-deps /app" in STAGES[target]


def test_build_context_keeps_what_is_copied_and_drops_local_state() -> None:
    patterns = dockerignore_patterns()
    sources = re.findall(r"^COPY (?!--from)(.+) \S+$", TEXT, re.M)
    for source in " ".join(sources).split():
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for local in (".venv", ".llmops", ".git", "llmops/__pycache__", ".mypy_cache", ".pytest_cache"):
        assert ignored(local, patterns), f"{local} would be sent to the daemon"
