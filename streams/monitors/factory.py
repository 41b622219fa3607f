"""Build the window checks a deployment names, from the drivers registered under their names."""

from __future__ import annotations

from collections.abc import Iterable

from streams.monitors.base import WindowCheck
from streams.registry import Registry


class UnknownCheckError(ValueError):
    """The configuration names a window check no driver provides."""


class CheckRegistry(Registry[WindowCheck]):
    def __init__(self) -> None:
        super().__init__("window check", UnknownCheckError)


# The drivers shipped with the worker register here (streams/monitors/drivers.py).
CHECKS = CheckRegistry()


def create_checks(names: Iterable[str], registry: CheckRegistry = CHECKS) -> list[WindowCheck]:
    """One check per configured name, in order (building one is pure: no IO)."""
    return registry.create_all(names)
