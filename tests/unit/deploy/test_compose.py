"""docker-compose.yml holds together: files it mounts exist, every command is a real entry
point of this repo with arguments it accepts, every service's environment builds valid
Settings, and the addresses, ports and credentials agree across services and configs.
(`docker compose config` needs the compose plugin, which this machine lacks.)"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from llmops.kafka.config import BusConfig
from tests.deploy_kit import (
    COMPOSE_FILE,
    DOCKERFILE,
    ROOT,
    check_command,
    load_yaml,
    metrics_port,
    option,
    probed_port,
    settings_under,
    unknown_llmops_env,
)

COLLECTOR_CONFIG = ROOT / "infra" / "otel" / "collector.yaml"
PROMETHEUS_CONFIG = ROOT / "infra" / "prometheus" / "prometheus.yml"
INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and $$, with `env` as the shell environment."""
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1)) or match.group(2) or ""

    return INTERPOLATION.sub(sub, value)


COMPOSE: dict[str, Any] = interpolate(load_yaml(COMPOSE_FILE))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# Our services are the ones built from this repo's Dockerfile.
OURS = {name: svc for name, svc in SERVICES.items() if "build" in svc}
LONG_RUNNING = {name: svc for name, svc in OURS.items() if svc.get("restart") != "no"}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def test_the_platform_and_its_infrastructure_are_all_there() -> None:
    assert {"kafka", "clickhouse", "otel-collector", "jaeger", "prometheus"} <= set(SERVICES)
    assert {"topics", "migrate", "router", "streams"} <= set(OURS)
    assert any(name.startswith("inference-") for name in OURS)


def test_third_party_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service.get("image", "")
        assert image, f"{name}: no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        if name not in OURS:
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image!r} needs a version tag"


def test_our_services_build_one_image_from_the_dockerfile() -> None:
    targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I))
    images = {svc["image"] for svc in OURS.values()}
    assert len(images) == 1, images
    for name, service in OURS.items():
        build = service["build"]
        assert (ROOT / build["context"]).resolve() == ROOT, name
        assert build["target"] in targets, f"{name}: no Dockerfile target {build['target']!r}"


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_command_is_an_entry_point_of_this_repo(name: str) -> None:
    check_command(OURS[name]["command"])


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_environment_builds_valid_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(OURS[name])
    assert not unknown_llmops_env(env), f"{name}: nothing reads {unknown_llmops_env(env)}"
    settings = settings_under(monkeypatch, env)
    pool = option(OURS[name]["command"], "--pool")
    if pool is not None:
        assert settings.pool(pool).name == pool
    # the containers reach each other by service name, never through loopback defaults
    kafka_host, kafka_port = host_port(settings.kafka_bootstrap_servers)
    assert (
        kafka_host in SERVICES
        and f":{kafka_port}" in env_of(SERVICES[kafka_host])["KAFKA_ADVERTISED_LISTENERS"]
    )
    clickhouse = urlsplit(settings.clickhouse_url)
    assert clickhouse.hostname in SERVICES and clickhouse.port == 8123
    assert settings.otel_exporter_otlp_endpoint is not None
    collector = urlsplit(settings.otel_exporter_otlp_endpoint)
    assert collector.hostname == "otel-collector" and collector.port == 4318


def test_clickhouse_credentials_and_database_agree_everywhere() -> None:
    server = env_of(SERVICES["clickhouse"])
    collector = env_of(SERVICES["otel-collector"])
    for name, service in OURS.items():
        url = urlsplit(env_of(service)["CLICKHOUSE_URL"])
        assert (url.username, url.password) == (
            server["CLICKHOUSE_USER"],
            server["CLICKHOUSE_PASSWORD"],
        ), name
        database = url.path.strip("/")
        assert database and database != "default", name
        assert collector["CLICKHOUSE_DATABASE"] == database
    assert collector["CLICKHOUSE_USER"] == server["CLICKHOUSE_USER"]
    assert collector["CLICKHOUSE_PASSWORD"] == server["CLICKHOUSE_PASSWORD"]


def test_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes", {}))
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared"


def test_inference_keeps_its_models_on_a_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in OURS.items():
        if option(service["command"], "--pool") is None:
            continue
        data_dir = settings_under(monkeypatch, env_of(service)).data_dir
        targets = {volume.split(":")[1] for volume in service.get("volumes", [])}
        assert str(data_dir) in targets, f"{name}: {data_dir} is not a volume"


def test_depends_on_names_services_with_the_state_it_waits_for() -> None:
    for name, service in SERVICES.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            target = SERVICES[dependency]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{dependency} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is not one-shot"
            else:
                assert condition == "service_started", condition
    # setup runs before the services that need it
    for name in LONG_RUNNING:
        assert SERVICES[name]["depends_on"]["topics"]["condition"] == (
            "service_completed_successfully"
        )
    assert "migrate" in SERVICES["streams"]["depends_on"]
    assert "migrate" in SERVICES["otel-collector"]["depends_on"]  # it only INSERTs


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_healthcheck_reads_the_port_the_service_serves_metrics_on(name: str) -> None:
    service = LONG_RUNNING[name]
    port = metrics_port(service["command"], env_of(service))
    assert port is not None, f"{name} serves no metrics"
    assert probed_port(service["healthcheck"]["test"]) == port


def test_prometheus_scrapes_every_service_on_its_metrics_port() -> None:
    prometheus = SERVICES["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    config_path = option(prometheus["command"], "--config.file")
    assert config_path is not None and (ROOT / mounts[config_path]) == PROMETHEUS_CONFIG
    scraped: dict[str, int] = {}
    for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for host in sd["names"]:
                scraped[host] = sd["port"]
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = host_port(target)
                if host != "localhost":
                    assert host in SERVICES, f"scrape target {target}: no such service"
                    scraped[host] = port
    for name, service in LONG_RUNNING.items():
        env = env_of(service)
        assert scraped.get(name) == metrics_port(service["command"], env), name
        # /metrics listens on loopback unless told otherwise
        assert env.get("LLMOPS_METRICS_HOST") == "0.0.0.0", name


def test_collector_gets_its_config_and_every_variable_it_reads() -> None:
    collector = SERVICES["otel-collector"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in collector["volumes"]}
    config_path = option(collector["command"], "--config") or ""
    assert (ROOT / mounts[config_path]) == COLLECTOR_CONFIG
    wanted = set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)", COLLECTOR_CONFIG.read_text()))
    assert wanted, "collector.yaml reads no variables? the parse is broken"
    env = env_of(collector)
    assert wanted <= set(env), f"collector misses {sorted(wanted - set(env))}"
    backend_host, backend_port = host_port(env["TRACES_BACKEND_OTLP"])
    assert backend_host in SERVICES and backend_port == 4317
    endpoint = urlsplit(env["CLICKHOUSE_ENDPOINT"])
    assert endpoint.hostname in SERVICES
    # the services export OTLP/HTTP to the port the collector's receiver listens on
    receiver = yaml.safe_load(COLLECTOR_CONFIG.read_text())["receivers"]["otlp"]["protocols"]
    assert receiver["http"]["endpoint"].endswith(":4318")


def test_kafka_runs_kraft_without_auto_created_topics() -> None:
    env = env_of(SERVICES["kafka"])
    assert "controller" in env["KAFKA_PROCESS_ROLES"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # a broker refusing our producers' biggest batch would stall dead letters
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= BusConfig("kafka:9092").max_request_size


def test_pools_json_is_one_list_the_inference_services_serve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools_json = {env_of(svc)["LLMOPS_POOLS"] for svc in OURS.values()}
    assert len(pools_json) == 1, "every service must see the same pools"
    pools = {p["name"] for p in json.loads(pools_json.pop())}
    served = {option(svc["command"], "--pool") for svc in OURS.values()} - {None}
    assert served == pools
