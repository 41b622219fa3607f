"""Build the monitors a deployment names. Drivers register a builder under their name; a
builder imports its driver's dependencies only when that monitor is asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streams.monitors.base import Monitor

MonitorBuilder = Callable[[], Monitor]


class UnknownMonitorError(ValueError):
    """The configuration names a monitor no driver provides."""


class MonitorRegistry:
    """Monitor names to their builders."""

    def __init__(self) -> None:
        self._builders: dict[str, MonitorBuilder] = {}

    def register(self, name: str, builder: MonitorBuilder) -> None:
        if name in self._builders:
            raise ValueError(f"monitor {name!r} is registered already")
        self._builders[name] = builder

    def names(self) -> list[str]:
        return sorted(self._builders)

    def create(self, name: str) -> Monitor:
        builder = self._builders.get(name)
        if builder is None:
            known = ", ".join(self.names()) or "none"
            raise UnknownMonitorError(f"unknown monitor {name!r} (known: {known})")
        return builder()


# The drivers shipped with the worker register here.
MONITORS = MonitorRegistry()


def create_monitors(names: Iterable[str], registry: MonitorRegistry = MONITORS) -> list[Monitor]:
    """One monitor per configured name, in order (building one is pure: no IO)."""
    return [registry.create(name) for name in names]
