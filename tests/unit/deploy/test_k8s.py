"""infra/k8s holds together: every manifest validates offline against the Kubernetes API
schemas (kubernetes-validate, bundled, strict) or, for operator resources, against the fields
their operators define; commands, environment, pools, consumer groups, topics, ports and
security settings agree with this repository's code and with each other."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from schemas.topics import INFERENCE_PARTITIONS, REQUESTS, inference_topic
from services.inference.service import group_id
from tests.deploy_kit import (
    DOCKERFILE,
    K8S_DIR,
    check_command,
    load_yaml,
    load_yaml_docs,
    metrics_port,
    option,
    probed_port,
    settings_under,
    unknown_llmops_env,
)

# The oldest Kubernetes minor the manifests target (all fields used exist since 1.27).
K8S_VERSION = "1.33"
KUSTOMIZATION = load_yaml(K8S_DIR / "kustomization.yaml")
FILES = [K8S_DIR / name for name in KUSTOMIZATION["resources"]]
DOCS: list[tuple[str, dict[str, Any]]] = [
    (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
    for path in FILES
    for doc in load_yaml_docs(path)
]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in DOCS if doc["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")
JOBS = of_kind("Job")
CONFIG = next(iter(of_kind("ConfigMap").values()))
SECRETS = of_kind("Secret")
WORKLOADS = {**DEPLOYMENTS, **JOBS}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for name, workload in WORKLOADS.items():
        for container in pod_spec(workload)["containers"]:
            yield f"{name}/{container['name']}", container, workload


CONTAINERS = {key: (container, workload) for key, container, workload in containers()}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment a container starts with: envFrom ConfigMaps/Secrets, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]["name"]
            assert ref == CONFIG["metadata"]["name"], f"no ConfigMap {ref}"
            env.update(CONFIG["data"])
        else:
            ref = source["secretRef"]["name"]
            assert ref in SECRETS, f"no Secret {ref}"
            env.update(SECRETS[ref]["stringData"])
    for item in container.get("env", []):
        env[item["name"]] = item["value"]
    return env


def pools() -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in json.loads(CONFIG["data"]["LLMOPS_POOLS"])}


def pool_of(deployment: dict[str, Any]) -> str | None:
    return option(pod_spec(deployment)["containers"][0]["command"], "--pool")


# ---------------------------------------------------------------- schemas

# What KEDA (keda.sh/v1alpha1) and Strimzi (kafka.strimzi.io/v1) accept, for the fields these
# manifests use: unknown fields fail, as in strict validation of the built-in kinds.
_INT = {"type": "integer", "minimum": 0}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": _INT,
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": _INT,
                "pollingInterval": _INT,
                "cooldownPeriod": _INT,
                "initialCooldownPeriod": _INT,
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "scalingModifiers": {"type": "object"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {"type": "object"},
                            # KEDA's trigger metadata is map[string]string
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}
KAFKA_TOPIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {
                "labels": {"type": "object", "required": ["strimzi.io/cluster"]},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object"},
            },
        },
    },
}
OPERATOR_SCHEMAS = {"ScaledObject": SCALED_OBJECT_SCHEMA, "KafkaTopic": KAFKA_TOPIC_SCHEMA}


def test_kustomization_lists_every_manifest_here() -> None:
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk
    assert KUSTOMIZATION["namespace"] == next(iter(of_kind("Namespace")))


@pytest.mark.parametrize("doc", [doc for _, doc in DOCS], ids=[key for key, _ in DOCS])
def test_manifest_validates_offline(doc: dict[str, Any]) -> None:
    if doc["kind"] in OPERATOR_SCHEMAS:
        jsonschema.validate(doc, OPERATOR_SCHEMAS[doc["kind"]])
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_offline_validator_rejects_what_the_api_server_would() -> None:
    deployment = json.loads(json.dumps(next(iter(DEPLOYMENTS.values()))))
    deployment["spec"]["replica"] = 2  # a typo: strict validation must catch it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    scaled = json.loads(json.dumps(next(iter(of_kind("ScaledObject").values()))))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 8  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)


# ---------------------------------------------------------------- containers


@pytest.mark.parametrize("key", sorted(CONTAINERS))
def test_command_is_an_entry_point_of_this_repo(key: str) -> None:
    container, _ = CONTAINERS[key]
    assert "args" not in container
    check_command(container["command"])


@pytest.mark.parametrize("key", sorted(CONTAINERS))
def test_environment_builds_valid_settings(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    container, _ = CONTAINERS[key]
    env = container_env(container)
    assert not unknown_llmops_env(env), f"nothing reads {unknown_llmops_env(env)}"
    settings = settings_under(monkeypatch, env)
    pool = option(container["command"], "--pool")
    if pool is not None:
        assert settings.pool(pool).name == pool
    assert settings.otel_exporter_otlp_endpoint, "no traces would leave the pod"
    if "streams" in container["command"] or "migrate" in container["command"]:
        assert "CLICKHOUSE_URL" in env, "ClickHouse writers need the Secret"


@pytest.mark.parametrize("key", sorted(CONTAINERS))
def test_container_is_locked_down_and_sized(key: str) -> None:
    container, workload = CONTAINERS[key]
    uid = int(DOCKERFILE.read_text().split("USER ")[-1].split(":")[0])
    pod_security = pod_spec(workload)["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == uid, "the image's user"
    assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    assert "/tmp" in mounts, "a read-only root needs a writable /tmp"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert pod_spec(workload).get("automountServiceAccountToken") is False
    image = container["image"].split(":")[0]
    assert image in {i["name"] for i in KUSTOMIZATION["images"]}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_probes_and_scrape_annotations_use_the_metrics_port(name: str) -> None:
    deployment = DEPLOYMENTS[name]
    container = pod_spec(deployment)["containers"][0]
    port = metrics_port(container["command"], container_env(container))
    assert port is not None, f"{name} serves no metrics"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probed_port(container[probe]["exec"]["command"]) == port, probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"] == [port]
    # /metrics listens on loopback unless told otherwise: Prometheus could not scrape it
    assert container_env(container)["LLMOPS_METRICS_HOST"] == "0.0.0.0"


# ---------------------------------------------------------------- pools and scaling


def test_one_inference_deployment_per_pool() -> None:
    served = [str(pool_of(d)) for d in DEPLOYMENTS.values() if pool_of(d) is not None]
    assert sorted(served) == sorted(pools())  # each pool once, no pool forgotten


@pytest.mark.parametrize("name", sorted(n for n, d in DEPLOYMENTS.items() if pool_of(d)))
def test_gpu_pools_get_a_gpu_and_cpu_pools_do_not(name: str) -> None:
    deployment = DEPLOYMENTS[name]
    pool = pools()[str(pool_of(deployment))]
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    if pool["engine"] == "vllm":
        assert gpus == 1 and container["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert "cuda" in container["image"], "vLLM runs from the cuda image"
        assert spec["nodeSelector"], "GPU pods belong on GPU nodes"
        taints = {(t["key"], t["effect"]) for t in spec["tolerations"]}
        assert ("nvidia.com/gpu", "NoSchedule") in taints
    else:
        assert gpus is None and "cuda" not in container["image"]


def test_scaled_objects_follow_each_pools_consumer_lag() -> None:
    scaled = of_kind("ScaledObject")
    assert scaled, "no lag-based scaling"
    bootstrap = CONFIG["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    gpu_pools = {name for name, p in pools().items() if p["engine"] == "vllm"}
    scaled_pools = set()
    for name, obj in scaled.items():
        target = DEPLOYMENTS[obj["spec"]["scaleTargetRef"]["name"]]
        pool = str(pool_of(target))
        scaled_pools.add(pool)
        assert "replicas" not in target["spec"], f"{name}: an apply would reset KEDA's count"
        assert 1 <= obj["spec"]["minReplicaCount"] <= obj["spec"]["maxReplicaCount"]
        assert obj["spec"]["maxReplicaCount"] <= INFERENCE_PARTITIONS, "idle consumers"
        [trigger] = obj["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["bootstrapServers"] == bootstrap
        assert meta["consumerGroup"] == group_id(pool)
        assert meta["topic"] == inference_topic(pool).name
        assert int(meta["lagThreshold"]) == pools()[pool]["capacity"]
        assert (
            meta["offsetResetPolicy"] == "earliest"
        )  # what our consumers do (llmops/kafka/consumer.py)
    assert gpu_pools <= scaled_pools


def test_router_scales_on_cpu_up_to_its_partitions() -> None:
    [hpa] = of_kind("HorizontalPodAutoscaler").values()
    target = DEPLOYMENTS[hpa["spec"]["scaleTargetRef"]["name"]]
    assert target["spec"]["template"]["spec"]["containers"][0]["command"][-1] == ("services.router")
    assert "replicas" not in target["spec"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= REQUESTS.partitions
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_every_deployment_has_a_disruption_budget_selecting_it() -> None:
    budgets = of_kind("PodDisruptionBudget").values()
    for name, deployment in DEPLOYMENTS.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, f"{name}: {len(matching)} budgets"


def test_jobs_create_topics_and_apply_migrations() -> None:
    commands = sorted(tuple(pod_spec(j)["containers"][0]["command"]) for j in JOBS.values())
    assert commands == [("llmops", "migrate"), ("llmops", "topics", "--create")]
    for job in JOBS.values():
        assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}
        assert job["spec"]["backoffLimit"] >= 1


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    [namespace] = of_kind("Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kustomize_renders_everything_into_the_namespace(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(out.stdout)
    docs = load_yaml_docs(rendered)
    assert len(docs) == len(DOCS)
    namespace = KUSTOMIZATION["namespace"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
    new_names = {i["newName"] for i in KUSTOMIZATION["images"]}
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"].split(":")[0] in new_names
