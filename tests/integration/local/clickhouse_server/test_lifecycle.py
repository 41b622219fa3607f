"""Store processes of their own: a password, and a restart on the same data directory."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from llmops.clickhouse import client as store
from llmops.clickhouse.credentials import load_credentials
from llmops.local.clickhouse_server.launcher import start_store, stop_store
from llmops.local.procs import free_port

pytestmark = pytest.mark.integration


def _get(url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, "", resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("X-ClickHouse-Exception-Code", ""), err.read()


def test_password_is_required_when_configured(tmp_path: Path) -> None:
    port = free_port()
    proc = start_store(tmp_path / "data", "127.0.0.1", port, "s3cret", tmp_path / "store.log")
    base = f"127.0.0.1:{port}"
    try:
        client = store.ensure_database(f"http://default:s3cret@{base}/secured")
        assert client.command("SELECT 1") == 1
        client.close()
        for wrong in (
            f"http://default:nope@{base}/secured",
            f"http://{base}/secured",
            f"http://intruder:s3cret@{base}/secured",
        ):
            with pytest.raises(DatabaseError) as info:
                store.connect(wrong)
            assert info.value.code == 516
        url = f"http://{base}/?query=SELECT%201"
        assert _get(url, {})[:2] == (403, "516")
        keyed = {"X-ClickHouse-User": "default", "X-ClickHouse-Key": "s3cret"}
        assert _get(url, keyed)[2] == b"1\n"
        basic = "Basic " + base64.b64encode(b"default:s3cret").decode()
        assert _get(url, {"Authorization": basic})[2] == b"1\n"
        assert _get(url + "&user=default&password=s3cret", {})[2] == b"1\n"
        assert _get(f"http://{base}/ping", {})[2] == b"Ok.\n"  # health needs no password
    finally:
        assert stop_store(proc) == 0


def _service_url(data_dir: Path, port: int, database: str) -> str:
    found = load_credentials(data_dir)
    assert found is not None
    return f"http://{found.service_user}:{found.service_password}@127.0.0.1:{port}/{database}"


def test_data_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    proc = start_store(data_dir, "127.0.0.1", port, log_path=tmp_path / "store.log")
    url = _service_url(data_dir, port, "kept")
    first_credentials = load_credentials(data_dir)
    try:
        client = store.ensure_database(url)
        assert store.apply_migrations(client)
        now = datetime.now(UTC)  # a recent ts: older rows fall to the text retention TTL
        rows = [{"request_id": f"r{i}", "ts": now, "output_tokens": i} for i in range(100)]
        store.insert_rows(client, "responses", rows, ["request_id", "ts", "output_tokens"])
        client.close()
    finally:
        assert stop_store(proc) == 0  # SIGTERM: a clean shutdown
    assert (data_dir / "clickhouse").is_dir()
    log = (tmp_path / "store.log").read_text()
    assert f"http://127.0.0.1:{port}" in log  # the start line names the URL

    proc = start_store(data_dir, "127.0.0.1", port, log_path=tmp_path / "store.log")
    assert load_credentials(data_dir) == first_credentials  # generated once, kept
    try:
        client = store.connect(url)
        assert client.command("SELECT count(), sum(output_tokens) FROM responses") == [
            "100",
            str(sum(range(100))),
        ]
        assert store.apply_migrations(client) == []  # nothing new after a restart
        client.close()
    finally:
        assert stop_store(proc) == 0


def test_a_second_store_cannot_take_a_port_in_use(tmp_path: Path, store_url: str) -> None:
    port = int(store_url.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match="already taken"):
        start_store(tmp_path / "data", "127.0.0.1", port)
