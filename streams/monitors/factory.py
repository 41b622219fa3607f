"""Build the monitors a deployment names, from the drivers registered under their names."""

from __future__ import annotations

from collections.abc import Iterable

from streams.monitors.base import Monitor
from streams.registry import Registry


class UnknownMonitorError(ValueError):
    """The configuration names a monitor no driver provides."""


class MonitorRegistry(Registry[Monitor]):
    def __init__(self) -> None:
        super().__init__("monitor", UnknownMonitorError)


# The drivers shipped with the worker register here.
MONITORS = MonitorRegistry()


def create_monitors(names: Iterable[str], registry: MonitorRegistry = MONITORS) -> list[Monitor]:
    """One monitor per configured name, in order (building one is pure: no IO)."""
    return registry.create_all(names)
