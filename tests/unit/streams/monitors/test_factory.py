"""Window checks are built by name from a registry; a name no driver provides is refused."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic import ValidationError

import streams.monitors.drivers  # noqa: F401  (registers the shipped checks)
from llmops.monitoring_config import DEFAULT_CHECKS, MonitoringSettings
from streams.monitoring.monitor import QualityMonitor
from streams.monitoring.streaks import Streaks
from streams.monitors.base import CheckResult, Referenced, WindowCheck
from streams.monitors.factory import CHECKS, CheckRegistry, UnknownCheckError, create_checks


class Silent(WindowCheck):
    """A test-only driver: it finds nothing."""

    name = "silent"

    def evaluate(
        self, windows: Sequence[Referenced], settings: MonitoringSettings, streaks: Streaks
    ) -> CheckResult:
        return CheckResult()


def test_the_shipped_checks_are_the_default_ones() -> None:
    assert sorted(CHECKS.names()) == sorted(DEFAULT_CHECKS)
    assert MonitoringSettings().checks == list(DEFAULT_CHECKS)
    assert [c.name for c in QualityMonitor(MonitoringSettings()).checks] == list(DEFAULT_CHECKS)


def test_checks_are_built_in_the_configured_order() -> None:
    registry = CheckRegistry()
    registry.register(Silent.name, Silent)
    registry.register("other", Silent)
    assert [type(c) for c in create_checks(["other", "silent"], registry)] == [Silent, Silent]
    assert create_checks([], registry) == []
    assert [c.name for c in create_checks(["fairness", "drift"])] == ["fairness", "drift"]


def test_an_unknown_check_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownCheckError, match=r"unknown window check 'nope' \(known: drift"):
        create_checks(["drift", "nope"])
    with pytest.raises(UnknownCheckError):
        QualityMonitor(MonitoringSettings(checks=["nope"]))


def test_a_name_registers_once() -> None:
    registry = CheckRegistry()
    registry.register(Silent.name, Silent)
    with pytest.raises(ValueError, match="registered already"):
        registry.register(Silent.name, Silent)


def test_a_check_named_twice_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="checks named more than once: drift"):
        MonitoringSettings(checks=["drift", "safety", "drift"])
