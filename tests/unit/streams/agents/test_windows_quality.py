"""The worker wires the quality windows from its settings: the quality table's writer, the
declared segment attributes for the seed, the segment cap and the monitoring thresholds."""

from __future__ import annotations

from pathlib import Path

from llmops.config import Settings
from llmops.monitoring_config import MonitoringSettings
from streams import rows
from streams.quality import QualityRules
from streams.worker import WorkerOptions, build_worker


def test_the_windows_agent_gets_the_quality_settings() -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        clickhouse_url="http://127.0.0.1:1/none",
        data_dir=Path("/tmp/llmops-unit"),
        segment_attributes=["locale", "plan"],
        segment_max_values=5,
        monitoring=MonitoringSettings(toxic_threshold=0.7, unsupported_below=0.3),
    )
    agent = build_worker(settings, WorkerOptions(app_id="unit-quality")).windows
    assert agent.quality_writer is not None
    assert agent.quality_writer.table == rows.QUALITY_WINDOWS_TABLE
    assert agent.quality_writer.columns == rows.QUALITY_WINDOW_COLUMNS
    assert agent.segment_attributes == ("locale", "plan")
    assert agent.accumulator.segment_max_values == 5
    assert agent.accumulator.quality_rules == QualityRules(0.7, 0.3)
