"""The detector drivers shipped with the worker, registered by name into DETECTORS.

Importing this module registers them; each builder imports its driver (and the driver its
libraries) only when a deployment names it, so an unused heavy driver costs nothing.
"""

from __future__ import annotations

from typing import Final

from streams.detectors.base import Detector
from streams.detectors.factory import DETECTORS, DetectorRegistry

# The PII driver's name (streams/detectors/pii.py); the contract test checks it agrees.
PII: Final = "pii_regex"

# The cheap tier: pure, no model beyond a linear classifier.
CHEAP_TIER: Final = (
    "lengths",
    "refusal_patterns",
    PII,
    "profanity_check",
    "json_validity",
    "lexical_grounding",
)

# What the worker runs on every response unless configured. Detectors run once per batch
# (streams/agents/sinks.py): the whole tier costs the worker about a fifth of its throughput
# (bench/streams.py: 1,164 vs 1,474 responses/s).
DEFAULT_DETECTORS: Final = CHEAP_TIER


def _lengths() -> Detector:
    from streams.detectors.lengths import LengthsDetector

    return LengthsDetector()


def _refusal() -> Detector:
    from streams.detectors.refusal import RefusalDetector

    return RefusalDetector()


def _pii() -> Detector:
    from streams.detectors.pii import PiiDetector

    detector: Detector = PiiDetector()  # typed here too while pii.py may be absent
    return detector


def _toxicity() -> Detector:
    from streams.detectors.toxicity import ToxicityDetector

    return ToxicityDetector()


def _json() -> Detector:
    from streams.detectors.json_format import JsonFormatDetector

    return JsonFormatDetector()


def _grounding() -> Detector:
    from streams.detectors.grounding import GroundingDetector

    return GroundingDetector()


def _presidio() -> Detector:
    # The deep tier (sampled, optional: the `deep` extra): NER PII, never in the defaults.
    from streams.detectors.presidio import PresidioPiiDetector

    return PresidioPiiDetector()


def _embeddings() -> Detector:
    # The embedding tier (sampled: Settings.embedding_sample_rate), never in the defaults:
    # it loads all-MiniLM-L6-v2 (the `embeddings` extra) and costs far more than the cheap tier.
    from streams.detectors.embeddings import MiniLMEmbeddingDetector

    return MiniLMEmbeddingDetector()


def register_all(registry: DetectorRegistry) -> None:
    """Register every shipped driver into `registry`."""
    registry.register("lengths", _lengths)
    registry.register("refusal_patterns", _refusal)
    registry.register(PII, _pii)
    registry.register("profanity_check", _toxicity)
    registry.register("json_validity", _json)
    registry.register("lexical_grounding", _grounding)
    registry.register("minilm_embeddings", _embeddings)
    registry.register("presidio_pii", _presidio)


register_all(DETECTORS)
