"""The Kafka topic files (infra/kafka/topics.yaml, infra/kafka/create-topics.sh,
infra/k8s/kafka-topics.yaml) match the topic catalogue (schemas/topics.py) and each other,
and the generator that writes them keeps doing so."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from llmops.kafka.config import BusConfig
from schemas.topics import CORE_TOPICS, TopicSpec, inference_topic, response_features_topic
from tests.deploy_kit import COMPOSE_FILE, K8S_DIR, ROOT, load_yaml, load_yaml_docs

GENERATOR_PATH = ROOT / "infra" / "kafka" / "generate.py"
TOPICS_YAML = ROOT / "infra" / "kafka" / "topics.yaml"
CREATE_SCRIPT = ROOT / "infra" / "kafka" / "create-topics.sh"
STRIMZI_YAML = K8S_DIR / "kafka-topics.yaml"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llmops_kafka_generate", GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
TOPICS: list[dict[str, Any]] = load_yaml(TOPICS_YAML)["topics"]
BY_NAME = {t["name"]: t for t in TOPICS}


def deployed_pools() -> set[str]:
    """Pool names the shipped deployments run: compose's and the k8s ConfigMap's."""
    names: set[str] = set()
    for service in load_yaml(COMPOSE_FILE)["services"].values():
        pools = service.get("environment", {}).get("LLMOPS_POOLS") if "build" in service else None
        if pools:
            names.update(p["name"] for p in json.loads(pools))
    for doc in load_yaml_docs(K8S_DIR / "configmap.yaml"):
        names.update(p["name"] for p in json.loads(doc["data"]["LLMOPS_POOLS"]))
    return names


def expected_specs() -> list[TopicSpec]:
    return [
        *CORE_TOPICS,
        response_features_topic(),
        *(inference_topic(pool) for pool in sorted(deployed_pools())),
    ]


@pytest.mark.parametrize("path", [TOPICS_YAML, CREATE_SCRIPT, STRIMZI_YAML], ids=lambda p: p.name)
def test_generated_file_is_up_to_date(path: Path) -> None:
    assert path.read_text() == gen.outputs()[path], (
        f"{path.relative_to(ROOT)} is stale: run `python infra/kafka/generate.py`"
    )


def test_the_generator_knows_exactly_the_pools_the_deployments_run() -> None:
    assert set(gen.POOLS) == deployed_pools()


def test_every_catalogue_topic_is_there_with_its_partitions_and_policy() -> None:
    specs = {s.name: s for s in expected_specs()}
    assert list(BY_NAME) == list(specs)
    for name, topic in BY_NAME.items():
        spec = specs[name]
        assert topic["partitions"] == spec.partitions, name
        configs = topic["configs"]
        assert configs["cleanup.policy"] == ("compact" if spec.compacted else "delete"), name
        for key, value in spec.configs.items():
            assert configs[key] == value, f"{name}: {key}"
        if not spec.compacted:
            assert int(configs["retention.ms"]) > 0, name


def test_replication_and_sizes_are_safe() -> None:
    for topic in TOPICS:
        rf, configs = topic["replication_factor"], topic["configs"]
        assert rf >= 3, f"{topic['name']}: replication {rf} does not survive a broker loss"
        assert 1 <= int(configs["min.insync.replicas"]) < rf, topic["name"]
        # a topic refusing the producers' biggest batch stalls its producer (dead letters!)
        assert int(configs["max.message.bytes"]) >= BusConfig("x").max_request_size


def test_min_insync_replicas_never_exceeds_what_exists() -> None:
    assert [gen.min_insync_replicas(rf) for rf in (1, 2, 3, 5)] == [1, 1, 2, 2]


def test_a_new_catalogue_topic_needs_a_retention_decision() -> None:
    spec = TopicSpec("llm.something-new", 3, "k", "p", ())
    with pytest.raises(KeyError, match="no retention decided"):
        gen.topic_configs(spec, 3)
    compacted = TopicSpec("llm.state", 1, "k", "p", (), compacted=True)
    assert gen.topic_configs(compacted, 3)["cleanup.policy"] == "compact"


def test_resource_names_are_dns_subdomains() -> None:
    assert gen.k8s_name("llm.inference.GPU_a100") == "llm.inference.gpu-a100"
    assert gen.k8s_name("llm.requests") == "llm.requests"
    with pytest.raises(ValueError):
        gen.k8s_name("__")


def test_strimzi_topics_mirror_topics_yaml() -> None:
    docs = load_yaml_docs(STRIMZI_YAML)
    assert [d["spec"]["topicName"] for d in docs] == [t["name"] for t in TOPICS]
    for doc in docs:
        topic = BY_NAME[doc["spec"]["topicName"]]
        assert doc["kind"] == "KafkaTopic" and doc["apiVersion"].startswith("kafka.strimzi.io/")
        assert DNS_SUBDOMAIN.match(doc["metadata"]["name"]), doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == gen.STRIMZI_CLUSTER
        assert doc["spec"]["partitions"] == topic["partitions"]
        assert doc["spec"]["replicas"] == topic["replication_factor"]
        assert doc["spec"]["config"] == topic["configs"]
        assert all(isinstance(v, str) for v in doc["spec"]["config"].values())


@pytest.mark.parametrize("replication", [1, 3])
def test_create_script_runs_kafka_topics_with_every_topic_and_config(
    replication: int, tmp_path: Path
) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    log = tmp_path / "calls"
    fake = tmp_path / "kafka-topics.sh"  # records its arguments, one call per line
    fake.write_text(f'#!{bash}\nprintf "%s\\t" "$@" >> "{log}"\necho >> "{log}"\n')
    fake.chmod(0o755)
    env = {"KAFKA_TOPICS": str(fake), "BOOTSTRAP": "b:9092", "REPLICATION_FACTOR": str(replication)}
    subprocess.run([bash, str(CREATE_SCRIPT)], env=env, check=True, timeout=30)

    calls = [line.rstrip("\t").split("\t") for line in log.read_text().splitlines()]
    assert len(calls) == len(TOPICS)
    for call, topic in zip(calls, TOPICS, strict=True):
        assert call[:4] == ["--bootstrap-server", "b:9092", "--create", "--if-not-exists"]
        flags = dict(zip(call[4:8:2], call[5:8:2], strict=True))
        assert flags == {"--topic": topic["name"], "--partitions": str(topic["partitions"])}
        assert call[8:10] == ["--replication-factor", str(replication)]
        configs = dict(c.split("=", 1) for c in call[11::2])
        assert call[10::2] == ["--config"] * len(configs)
        expected = {
            **topic["configs"],
            "min.insync.replicas": str(gen.min_insync_replicas(replication)),
        }
        assert configs == expected


def test_check_mode_finds_stale_files_and_writing_fixes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = {name: tmp_path / name for name in ("topics.yaml", "create.sh", "strimzi.yaml")}
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "TOPICS_YAML", targets["topics.yaml"])
    monkeypatch.setattr(gen, "CREATE_SCRIPT", targets["create.sh"])
    monkeypatch.setattr(gen, "STRIMZI_YAML", targets["strimzi.yaml"])
    assert gen.main(["--check"]) == 1  # nothing written yet
    assert not any(p.exists() for p in targets.values())
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    assert targets["create.sh"].stat().st_mode & 0o111
    targets["topics.yaml"].write_text("edited by hand\n")
    assert gen.main(["--check"]) == 1
