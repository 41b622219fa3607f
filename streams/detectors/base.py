"""The detector contract: per-response signals (safety, PII, refusals, grounding, format).

A detector reads a batch of exchanges (what went in, what came out, the context the app gave)
and returns, for each exchange in order, the signals it found. Batches, because the stronger
tiers (embeddings, NER, a judge pool) are only fast in batches; the cheap tier just loops.

Drivers are pure: no IO, no clock, no global state, so one can be swapped for a stronger one
by configuration and every driver passes the same contract test
(tests/unit/streams/detectors/test_contract.py). Every signal names the detector and its
version, so an analyst can tell which detector said what after an upgrade.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

# Which text of the exchange a finding is in.
Where = Literal["input", "output", "context"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """What a detector reads of one response."""

    request_id: str
    input: str  # the rendered prompt the model saw ("" when unknown)
    output: str  # the model's text ("" on an error)
    context: str | None = None  # the grounding context the app sent, if any
    wants_json: bool = False  # the request asked for a JSON answer


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found in one text: an entity, a matched pattern, an unsupported sentence."""

    kind: str  # e.g. "EMAIL", "CREDIT_CARD", "refusal:cannot_help", "unsupported_sentence"
    where: Where
    start: int  # character offsets in that text, end exclusive
    end: int
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class Signal:
    """One measured property of one exchange."""

    name: str  # what is measured: "refusal", "pii_output", "toxicity", "json_valid", ...
    value: float  # a 0/1 flag, a probability, a share or a count; always finite
    detector: str  # the driver's name
    version: str  # the driver's version
    findings: tuple[Finding, ...] = ()
    # A vector measured with it (the embedding tier's output embedding); () for none.
    vector: tuple[float, ...] = ()


class Detector(abc.ABC):
    """A kind of detector; `name` is what configuration calls it."""

    name: ClassVar[str]
    version: ClassVar[str]

    @abc.abstractmethod
    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        """The signals of each exchange, one list per exchange, in the order given.

        Must not raise on any text (empty, huge, any unicode, control characters): a detector
        that cannot judge an exchange leaves its signal out rather than failing the batch."""

    def signal(
        self,
        name: str,
        value: float,
        findings: Sequence[Finding] = (),
        vector: Sequence[float] = (),
    ) -> Signal:
        """A signal stamped with this detector's name and version."""
        return Signal(name, float(value), self.name, self.version, tuple(findings), tuple(vector))
