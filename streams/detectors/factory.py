"""Build the detectors a deployment names, from the drivers registered under their names."""

from __future__ import annotations

from collections.abc import Iterable

from streams.detectors.base import Detector
from streams.registry import Registry


class UnknownDetectorError(ValueError):
    """The configuration names a detector no driver provides."""


class DetectorRegistry(Registry[Detector]):
    def __init__(self) -> None:
        super().__init__("detector", UnknownDetectorError)


# The drivers shipped with the worker register here.
DETECTORS = DetectorRegistry()


def create_detectors(
    names: Iterable[str], registry: DetectorRegistry = DETECTORS
) -> list[Detector]:
    """One detector per configured name, in order."""
    return registry.create_all(names)
