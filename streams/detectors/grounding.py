"""Lexical grounding: how much of the answer the request's context supports, word for word.

The cheap tier's faithfulness proxy (the embedding tier does it by meaning). The output is
split into sentences (at . ! ? followed by whitespace, and at line breaks); a sentence's
content words are its word tokens (`\\w+`, so any script and numbers count), lowercased, less
English stopwords, with a plural "s" dropped (so "cats" meets "cat"; no other stemming, to
stay predictable). A sentence is supported when at least SUPPORT_THRESHOLD of its content
words occur in the context. Sentences without content words ("Yes.", "OK!") are not judged.

Signal `grounding`: the share of judged sentences that are supported, with an
`unsupported_sentence` finding per other sentence (its span in the output; score = the share
of its content words the context lacks). No signal without a context with content words, or
when no sentence of the output can be judged: there is nothing to measure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Final

from streams.detectors.base import Detector, Exchange, Finding, Signal

# A sentence whose content words are at least this share in the context is supported.
SUPPORT_THRESHOLD: Final = 0.5

_STOPWORDS: Final = """
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it
its itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
s t d ll m re ve don doesn didn isn aren wasn weren won yes ok okay sure please thanks thank
"""
STOPWORDS: Final = frozenset(_STOPWORDS.split())

# A sentence ends at . ! ? (runs of them) followed by whitespace, or at a line break.
_BOUNDARY: Final = re.compile(r"[.!?]++(?=\s)|\n")
_WORD: Final = re.compile(r"\w+")


def content_words(text: str) -> set[str]:
    """The content words of `text` (see the module docstring)."""
    # Set operations rather than a loop per word: this runs on every response with a context.
    words = set(_WORD.findall(text.lower())) - STOPWORDS
    plurals = {w for w in words if len(w) > 3 and w[-1] == "s" and w[-2] != "s"}
    return (words - plurals) | {w[:-1] for w in plurals}


def sentences(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the sentences of `text`, stripped of surrounding whitespace, empty ones left out."""
    start = 0
    for match in _BOUNDARY.finditer(text):
        yield from _stripped(text, start, match.end())
        start = match.end()
    yield from _stripped(text, start, len(text))


def _stripped(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    if lead + trail < len(piece):
        yield start + lead, end - trail


class GroundingDetector(Detector):
    """Signal `grounding` (share of supported sentences) when the request gave a context."""

    name = "lexical_grounding"
    version = "1"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        return [self._one(exchange) for exchange in exchanges]

    def _one(self, exchange: Exchange) -> list[Signal]:
        if exchange.context is None:
            return []
        known = content_words(exchange.context)
        if not known:
            return []
        judged = 0
        unsupported = []
        for start, end in sentences(exchange.output):
            words = content_words(exchange.output[start:end])
            if not words:
                continue
            judged += 1
            share = len(words & known) / len(words)
            if share < SUPPORT_THRESHOLD:
                unsupported.append(Finding("unsupported_sentence", "output", start, end, 1 - share))
        if judged == 0:
            return []
        return [self.signal("grounding", (judged - len(unsupported)) / judged, unsupported)]
