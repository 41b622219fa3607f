"""Session-wide real infrastructure: one Tansu broker (and one store) per test session."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

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

from llmops.clickhouse.credentials import StoreCredentials  # noqa: E402
from llmops.local.broker import start_broker  # noqa: E402
from llmops.local.procs import free_port  # noqa: E402


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


# The session store's limits, small enough for tests to cross them cheaply.
STORE_TEST_LIMITS = {
    "LLMOPS_STORE_MAX_BODY_BYTES": str(16 << 20),
    "LLMOPS_STORE_MAX_RESULT_BYTES": str(16 << 20),
    "LLMOPS_STORE_ANALYST_MAX_EXECUTION_S": "30",
    "LLMOPS_STORE_ANALYST_MAX_MEMORY_BYTES": str(1 << 30),
}


@dataclass(frozen=True)
class StoreServer:
    """The session's store: its address (no credentials) and its two accounts."""

    address: str  # "127.0.0.1:PORT"
    data_dir: Path
    credentials: StoreCredentials

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """http://user:password@address, the service user's unless told otherwise."""
        user = user or self.credentials.service_user
        if password is None:
            password = self.credentials.service_password
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@{self.address}"


@pytest.fixture(scope="session")
def store_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    """A real ClickHouse HTTP interface: the store service (chDB) as a subprocess, on a data
    dir of this session. pytest itself never opens a chDB path (one path per process):
    everything goes through this server."""
    from llmops.clickhouse.credentials import load_credentials
    from llmops.local.clickhouse_server.launcher import start_store, stop_store

    port = free_port()
    root = tmp_path_factory.mktemp("store")
    data_dir = root / "data"
    proc = start_store(
        data_dir, "127.0.0.1", port, log_path=root / "store.log", env=STORE_TEST_LIMITS
    )
    try:
        credentials = load_credentials(data_dir)
        assert credentials is not None, "the store wrote no credentials"
        yield StoreServer(f"127.0.0.1:{port}", data_dir, credentials)
    finally:
        stop_store(proc)


@pytest.fixture(scope="session")
def store_url(store_server: StoreServer) -> str:
    """Base URL of the session's store with the service user's credentials in it
    (http://default:PASSWORD@127.0.0.1:PORT). Tests add "/<their database>"."""
    return store_server.url()


@pytest.fixture
def database(store_url: str) -> str:
    """A fresh database of this test on the session's store, migrated; its URL."""
    from llmops.clickhouse.client import apply_migrations, ensure_database

    url = f"{store_url}/t_{uuid.uuid4().hex[:12]}"
    client = ensure_database(url)
    try:
        apply_migrations(client)
    finally:
        client.close()
    return url
