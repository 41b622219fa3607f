"""The window checks shipped with the worker, registered by name into CHECKS on import.

Each is a thin driver over the pure statistics of streams/monitoring/: drift (Evidently's
methods, Benjamini-Hochberg, persistence), safety (ceilings and the jump test against the
reference) and fairness (disparity ratios across each segment attribute's values).
"""

from __future__ import annotations

from collections.abc import Sequence

from llmops.monitoring_config import MonitoringSettings
from streams.monitoring.drift import drift_results
from streams.monitoring.fairness import fairness_conditions
from streams.monitoring.safety import safety_conditions
from streams.monitoring.streaks import Streaks
from streams.monitors.base import CheckResult, Referenced, WindowCheck
from streams.monitors.factory import CHECKS, CheckRegistry


class DriftCheck(WindowCheck):
    name = "drift"

    def evaluate(
        self, windows: Sequence[Referenced], settings: MonitoringSettings, streaks: Streaks
    ) -> CheckResult:
        reports, conditions = drift_results(windows, settings.drift, streaks)
        return CheckResult(reports, conditions)


class SafetyCheck(WindowCheck):
    name = "safety"

    def evaluate(
        self, windows: Sequence[Referenced], settings: MonitoringSettings, streaks: Streaks
    ) -> CheckResult:
        return CheckResult(conditions=safety_conditions(windows, settings.safety))


class FairnessCheck(WindowCheck):
    name = "fairness"

    def evaluate(
        self, windows: Sequence[Referenced], settings: MonitoringSettings, streaks: Streaks
    ) -> CheckResult:
        current = [window for window, _ in windows]
        return CheckResult(conditions=fairness_conditions(current, settings.fairness))


def register_all(registry: CheckRegistry) -> None:
    for check in (DriftCheck, SafetyCheck, FairnessCheck):
        registry.register(check.name, check)


register_all(CHECKS)
