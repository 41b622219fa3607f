"""`llmops up --demo` fills in what the demo shows, and never overrides what was configured."""

from __future__ import annotations

import pytest

from llmops.cli.stack import _demo_settings
from llmops.config import Settings
from llmops.local.demo.traffic import DEMO_SEGMENTS, DEMO_WINDOW_S


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMOPS_METRICS_WINDOW_S", "LLMOPS_SEGMENT_ATTRIBUTES", "LLMOPS_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_the_default_window_is_a_minute_and_the_demo_shortens_it() -> None:
    settings = Settings()
    assert settings.metrics_window_s == 60.0
    demo = _demo_settings(settings)
    assert demo.metrics_window_s == DEMO_WINDOW_S < 60.0
    assert demo.segment_attributes == list(DEMO_SEGMENTS)


def test_a_configured_window_and_segments_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_METRICS_WINDOW_S", "60")  # the default, but said explicitly
    monkeypatch.setenv("LLMOPS_SEGMENT_ATTRIBUTES", '["tier"]')
    demo = _demo_settings(Settings())
    assert demo.metrics_window_s == 60.0 and demo.segment_attributes == ["tier"]
