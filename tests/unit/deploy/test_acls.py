"""The Kafka ACLs (infra/kafka/acls.yaml -> create-acls.sh) give each principal what its
service does and no more: only pools write heartbeats, only pools and the router write
results and replies, apps write requests and use their own reply topics."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from schemas.topics import (
    DLQ,
    EXPERIMENTS,
    POOL_STATUS,
    PROMPTS,
    REQUESTS,
    RESPONSES,
    STREAMS_APP_ID,
    inference_group,
    inference_topic,
    reply_topic,
    response_features_topic,
)
from services.router.service import GROUP_ID as ROUTER_GROUP
from tests.deploy_kit import ROOT

RENDERER = ROOT / "infra" / "kafka" / "acls.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llmops_kafka_acls", RENDERER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


acls = _load()
GRANTS = acls.load()
USERS = sorted({g.user for g in GRANTS})
POOL_USERS = [f"llmops-inference-{pool}" for pool in acls.POOLS]
APP_USERS = [u for u in USERS if u.startswith("llmops-app-")]


def may(user: str, op: str, topic: str) -> bool:
    return bool(acls.allowed(GRANTS, user, op, "topic", topic))


def writers(topic: str) -> list[str]:
    return [u for u in USERS if may(u, "Write", topic)]


def test_the_script_is_what_the_yaml_renders() -> None:
    done = subprocess.run(
        [sys.executable, str(RENDERER), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    script = (ROOT / "infra" / "kafka" / "create-acls.sh").read_text()
    assert script == acls.render_script(GRANTS)
    assert subprocess.run(["bash", "-n", "-c", script], check=False).returncode == 0


def test_only_pools_write_heartbeats() -> None:
    assert writers(POOL_STATUS.name) == POOL_USERS


def test_only_pools_and_the_router_write_results_and_replies() -> None:
    expected = sorted(["llmops-router", *POOL_USERS])
    assert writers(RESPONSES.name) == expected
    assert writers(reply_topic("demo-0123456789ab").name) == expected


def test_only_the_registry_and_the_streams_controller_write_the_control_topics() -> None:
    # Prompt events: the registry's principal (`llmops prompts`, the seed push of `llmops up`).
    # Experiments: the same principal (`llmops experiments`) and the metrics worker's
    # controller (ramp steps, guardrail stops).
    assert writers(PROMPTS.name) == ["llmops-registry"]
    assert sorted(writers(EXPERIMENTS.name)) == ["llmops-registry", "llmops-streams"]


def test_apps_send_feedback_and_the_worker_reads_it() -> None:
    assert set(writers("llm.feedback")) == set(APP_USERS)


def test_only_the_router_writes_the_pools_topics() -> None:
    for pool in acls.POOLS:
        assert writers(inference_topic(pool).name) == ["llmops-router"]


def test_apps_write_requests_and_use_only_their_own_reply_topics() -> None:
    assert APP_USERS
    for user in APP_USERS:
        app = user.removeprefix("llmops-app-")
        own = reply_topic(f"{app}-0123456789ab").name  # as the SDK names them
        other = reply_topic("someone-else-0123456789ab").name
        assert may(user, "Write", REQUESTS.name)
        assert all(may(user, op, own) for op in ("Create", "Read", "Describe", "Delete"))
        assert not any(may(user, op, other) for op in ("Read", "Write", "Delete"))
        written = [t for t in (RESPONSES, POOL_STATUS, DLQ, PROMPTS) if may(user, "Write", t.name)]
        assert written == []


def test_each_service_may_read_its_input_in_its_own_group() -> None:
    def in_group(user: str, group: str) -> bool:
        return bool(acls.allowed(GRANTS, user, "Read", "group", group))

    assert may("llmops-router", "Read", REQUESTS.name)
    assert may("llmops-router", "Read", POOL_STATUS.name)
    assert in_group("llmops-router", ROUTER_GROUP)
    for pool, user in zip(acls.POOLS, POOL_USERS, strict=True):
        assert may(user, "Read", inference_topic(pool).name)
        assert in_group(user, inference_group(pool))
        # the router's rescuer joins a dead pool's group and reads its topic
        assert in_group("llmops-router", inference_group(pool))
        assert may("llmops-router", "Read", inference_topic(pool).name)
        others = [p for p in acls.POOLS if p != pool]
        assert not any(may(user, "Read", inference_topic(o).name) for o in others)
    features = response_features_topic(STREAMS_APP_ID).name
    for topic in (REQUESTS.name, RESPONSES.name, DLQ.name, features):
        assert may("llmops-streams", "Read", topic)
    assert in_group("llmops-streams", STREAMS_APP_ID)


@pytest.mark.parametrize(
    ("yaml_text", "complaint"),
    [
        ("principals:\n  x:\n    user: u\n    topics:\n      t: [Eat]\n", "unknown operations"),
        ("principals:\n  x:\n    user: u\n    topics:\n      t: []\n", "list of operations"),
        ("principals:\n  x:\n    user: u\n    topics:\n      a/b: [Read]\n", "not a topic"),
        ("principals:\n  x:\n    user: u\n    topics:\n      llm.{pool}: [Read]\n", "placeholder"),
        (
            "principals:\n  x:\n    user: u\n    topics: {t: [Read]}\n"
            "  y:\n    user: u\n    topics: {t: [Read]}\n",
            "share a user",
        ),
    ],
)
def test_grants_that_cannot_be_made_are_refused(
    tmp_path: Path, yaml_text: str, complaint: str
) -> None:
    path = tmp_path / "acls.yaml"
    path.write_text(yaml_text)
    with pytest.raises(acls.AclError, match=complaint):
        acls.load(path)
