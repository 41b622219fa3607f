"""Session-wide real infrastructure: one Tansu broker (and one store) per test session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.signing_kit import TEST_KEY_ID, TEST_SIGNING_KEY

# The real-model smoke test is collected only on request (see its docstring): not a skip.
collect_ignore = (
    [] if os.environ.get("LLMOPS_TEST_GEMMA") == "1" else ["integration/test_gemma_smoke.py"]
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One deployment key for the whole run (before anything reads settings): every service, in
# process or a subprocess, signs heartbeats and results and verifies them, as in production.
os.environ.update(LLMOPS_SIGNING_KEY=TEST_SIGNING_KEY, LLMOPS_SIGNING_KEY_ID=TEST_KEY_ID)
os.environ.pop("LLMOPS_SIGNING", None)

from llmops.broker import start_broker  # noqa: E402
from llmops.procs import free_port  # noqa: E402


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a real Kafka-compatible broker (Tansu, in memory) for this session."""
    port = free_port()
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    proc = start_broker("127.0.0.1", port, log)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real ClickHouse HTTP interface: the store service (chDB) as a subprocess,
    on a data dir of this session. Tests add "/<their database>". pytest itself never opens
    a chDB path (one path per process): everything goes through this server."""
    from services.store.launcher import start_store, stop_store

    port = free_port()
    root = tmp_path_factory.mktemp("store")
    proc = start_store(root / "data", "127.0.0.1", port, log_path=root / "store.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_store(proc)
