"""Names to builders: how the worker's extension points (monitors, detectors) pick drivers.

A driver registers a builder under its name; the builder imports the driver's dependencies
only when that name is configured, so an unused heavy driver costs nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names of one kind of driver to their builders."""

    def __init__(self, kind: str, unknown: type[ValueError]) -> None:
        self._kind = kind
        self._unknown = unknown
        self._builders: dict[str, Callable[[], T]] = {}

    def register(self, name: str, builder: Callable[[], T]) -> None:
        if name in self._builders:
            raise ValueError(f"{self._kind} {name!r} is registered already")
        self._builders[name] = builder

    def names(self) -> list[str]:
        return sorted(self._builders)

    def create(self, name: str) -> T:
        builder = self._builders.get(name)
        if builder is None:
            known = ", ".join(self.names()) or "none"
            raise self._unknown(f"unknown {self._kind} {name!r} (known: {known})")
        return builder()

    def create_all(self, names: Iterable[str]) -> list[T]:
        """One driver per configured name, in order."""
        return [self.create(name) for name in names]
