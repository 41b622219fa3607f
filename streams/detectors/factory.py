"""Build the detectors a deployment names, from the drivers registered under their names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from streams.detectors.base import Detector
from streams.registry import Registry


class UnknownDetectorError(ValueError):
    """The configuration names a detector no driver provides."""


class DetectorRegistry(Registry[Detector]):
    def __init__(self) -> None:
        super().__init__("detector", UnknownDetectorError)


@runtime_checkable
class SampledDetector(Protocol):
    """A driver that reads a share of the exchanges (a sampled tier): `sample_tier` names
    which configured rate applies to it ("embedding": Settings.embedding_sample_rate,
    "deep": Settings.deep_sample_rate)."""

    sample_tier: str
    sample_rate: float

    def with_sample_rate(self, rate: float) -> Detector:
        """The same detector reading a `rate` share (0..1) of the exchanges."""
        ...


# The drivers shipped with the worker register here.
DETECTORS = DetectorRegistry()


def create_detectors(
    names: Iterable[str],
    registry: DetectorRegistry = DETECTORS,
    sample_rates: Mapping[str, float] | None = None,
) -> list[Detector]:
    """One detector per configured name, in order; a sampled driver whose tier
    `sample_rates` names (tier -> rate) reads that share of the exchanges."""
    built = registry.create_all(names)
    rates = sample_rates or {}
    return [
        detector.with_sample_rate(rates[detector.sample_tier])
        if isinstance(detector, SampledDetector) and detector.sample_tier in rates
        else detector
        for detector in built
    ]
