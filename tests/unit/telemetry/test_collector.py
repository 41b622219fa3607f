"""The production collector config is wired: every pipeline part is defined, spans reach the
table our migration creates, and services' default OTLP/HTTP port is open."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from llmops.clickhouse.client import MIGRATIONS_DIR

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "infra" / "otel" / "collector.yaml"
DDL = MIGRATIONS_DIR / "006_otel_traces.sql"


def load() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return config


def test_every_pipeline_component_is_defined() -> None:
    config = load()
    service = config["service"]
    for extension in service["extensions"]:
        assert extension in config["extensions"]
    for pipeline in service["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in config[kind], f"{kind[:-1]} {name} is used but not defined"


def test_spans_go_to_the_table_our_migration_creates() -> None:
    exporter = load()["exporters"]["clickhouse"]
    created = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", DDL.read_text())
    assert exporter["traces_table_name"] in created
    # Our DDL (ReplacingMergeTree keyed by span) must not be replaced by the exporter's own.
    assert exporter["create_schema"] is False
    assert "llmops" in exporter["database"]


def test_otlp_http_listens_where_services_export() -> None:
    protocols = load()["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert load()["service"]["pipelines"]["traces"]["exporters"] == ["clickhouse", "otlp/backend"]
