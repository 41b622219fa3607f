"""The faust app's configuration and the agents it registers (no IO)."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from llmops.config import Settings
from llmops.experiments.guardrail import GuardrailConfig
from schemas.topics import RESPONSE_FEATURES_PARTITIONS, RESPONSES
from streams.agents.feedback import EXPERIMENT_SINKS
from streams.agents.history import HISTORY_SINKS
from streams.agents.sinks import SINKS
from streams.worker import (
    WorkerOptions,
    build_worker,
    configured_detectors,
    configured_monitor,
    create_app,
    faust_settings,
    topics_needed,
)

SETTINGS = Settings(
    kafka_bootstrap_servers="127.0.0.1:1,127.0.0.1:2",
    clickhouse_url="http://127.0.0.1:1/none",
    metrics_window_s=10,
    data_dir=Path("/tmp/llmops-unit"),
)


def test_faust_settings_follow_the_tansu_notes() -> None:
    conf = faust_settings(SETTINGS, WorkerOptions())
    assert conf["broker"] == ["kafka://127.0.0.1:1", "kafka://127.0.0.1:2"]
    assert conf["broker_session_timeout"] == 6
    assert conf["broker_heartbeat_interval"] == 1
    assert conf["consumer_auto_offset_reset"] == "earliest"
    assert conf["value_serializer"] == conf["key_serializer"] == "raw"
    assert conf["stream_wait_empty"] is False
    assert conf["web_enabled"] is False
    assert conf["datadir"] == "/tmp/llmops-unit/faust"
    assert "processing_guarantee" not in conf  # exactly_once fails on Tansu


def test_the_web_server_only_ever_binds_loopback() -> None:
    conf = faust_settings(SETTINGS, WorkerOptions(web_port=16066, data_dir=Path("/x")))
    assert (conf["web_enabled"], conf["web_port"], conf["web_bind"]) == (True, 16066, "127.0.0.1")
    assert conf["datadir"] == "/x"


def test_the_app_is_configured_from_settings() -> None:
    app = create_app(SETTINGS, WorkerOptions(app_id="unit-streams"))
    assert isinstance(app, faust.App)
    assert app.conf.id == "unit-streams"
    assert app.conf.web_enabled is False
    assert app.conf.broker_session_timeout == 6
    # three sinks, prompt history, feedback, experiment history, the windows and the monitor
    assert len(app.agents) == 8


def test_the_monitor_reads_llm_metrics_unless_monitoring_is_off() -> None:
    worker = build_worker(SETTINGS, WorkerOptions(app_id="unit-streams"))
    agents = {agent.name: agent for agent in worker.app.agents.values()}
    assert agents["streams.monitor"].channel.get_topic_name() == "llm.metrics"
    off = SETTINGS.model_copy(
        update={"monitoring": SETTINGS.monitoring.model_copy(update={"enabled": False})}
    )
    quiet = build_worker(off, WorkerOptions(app_id="unit-streams"))
    assert quiet.monitor is None and len(quiet.app.agents) == 7


def test_the_guardrail_knobs_come_from_the_settings() -> None:
    knobs = {
        "guardrail_interval_s": 30.0,
        "guardrail_alpha": 0.01,
        "guardrail_tau": 0.05,
        "guardrail_min_per_arm": 500,
    }
    worker = build_worker(SETTINGS.model_copy(update=knobs), WorkerOptions(app_id="unit-streams"))
    assert worker.guardrail.interval_s == 30.0
    assert worker.guardrail.config == GuardrailConfig(alpha=0.01, tau=0.05, min_per_arm=500)
    default = build_worker(SETTINGS, WorkerOptions(app_id="unit-streams")).guardrail
    assert (default.interval_s, default.config) == (5.0, GuardrailConfig())


def test_topics_needed_include_the_repartition_topic() -> None:
    specs = {s.name: s.partitions for s in topics_needed(WorkerOptions(app_id="a1"))}
    assert specs == {
        "llm.requests": 12,
        "llm.responses": 12,
        "llm.dlq": 3,
        "llm.metrics": 6,
        "llm.alerts": 1,
        "llm.prompts": 1,
        "llm.experiments": 1,
        "llm.feedback": 6,
        "a1-response-features": RESPONSE_FEATURES_PARTITIONS,
    }


def test_every_declared_sink_is_an_agent_on_its_topic() -> None:
    worker = build_worker(SETTINGS, WorkerOptions(app_id="unit-streams"))
    declared = (*SINKS, *HISTORY_SINKS, *EXPERIMENT_SINKS)
    assert list(worker.sinks) == [sink.topic.name for sink in declared]
    agents = {agent.name: agent for agent in worker.app.agents.values()}
    for sink in declared:
        assert agents[sink.agent].channel.get_topic_name() == sink.topic.name
    assert agents["streams.windows"].channel.get_topic_name() == "unit-streams-response-features"


def test_the_default_detectors_are_the_drivers_default() -> None:
    """llmops.config writes the names out (it must not import streams): they must agree."""
    from streams.detectors.drivers import CHEAP_TIER, DEFAULT_DETECTORS

    assert Settings().detectors == list(DEFAULT_DETECTORS)
    assert set(DEFAULT_DETECTORS) <= set(CHEAP_TIER)
    worker = build_worker(SETTINGS, WorkerOptions(app_id="unit-streams"))
    try:
        context = worker.sinks[RESPONSES.name].context
        assert [d.name for d in context.detectors] == list(DEFAULT_DETECTORS)
    finally:
        worker.close()


def test_an_unknown_detector_refuses_the_start_in_one_line() -> None:
    settings = SETTINGS.model_copy(update={"detectors": ["lengths", "no_such_detector"]})
    with pytest.raises(SystemExit) as stop:
        configured_detectors(settings)
    message = str(stop.value.code)
    assert message.startswith("cannot start: unknown detector 'no_such_detector'")
    assert "\n" not in message


def test_an_unknown_window_check_refuses_the_start_in_one_line() -> None:
    monitoring = SETTINGS.monitoring.model_copy(update={"checks": ["drift", "vibes"]})
    with pytest.raises(SystemExit) as stop:
        configured_monitor(SETTINGS.model_copy(update={"monitoring": monitoring}))
    message = str(stop.value.code)
    assert message.startswith("cannot start: unknown window check 'vibes' (known: drift")
    assert "LLMOPS_MONITORING" in message and "\n" not in message


def test_no_detectors_is_a_valid_configuration() -> None:
    assert configured_detectors(SETTINGS.model_copy(update={"detectors": []})) == ()
