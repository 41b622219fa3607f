"""The embedding tier (all-MiniLM-L6-v2) on fixed inputs.

Every test of the real model is in this file (and the contract suite), so a test process
loads it once: streams.detectors.embeddings caches it per process.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmops.config import Settings
from streams.detectors import embeddings
from streams.detectors.base import Exchange, Signal
from streams.detectors.embeddings import (
    DIMENSIONS,
    MAX_CONTEXT_SENTENCES,
    MAX_OUTPUT_SENTENCES,
    MAX_SENTENCE_CHARS,
    MAX_TOKENS,
    MODEL_BATCH,
    MiniLMEmbeddingDetector,
    load_encoder,
    load_model,
)
from streams.detectors.factory import create_detectors
from streams.sampling import sampled
from streams.worker import configured_detectors

MEGABYTE = 1 << 20

CONTEXT = (
    "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall. "
    "Gustave Eiffel's company designed and built it."
)


@pytest.fixture(scope="module")
def detector() -> MiniLMEmbeddingDetector:
    return MiniLMEmbeddingDetector()


def signals_of(detector: MiniLMEmbeddingDetector, exchange: Exchange) -> dict[str, Signal]:
    (signals,) = detector.detect([exchange])
    return {s.name: s for s in signals}


def value(detector: MiniLMEmbeddingDetector, name: str, output: str, question: str = "") -> float:
    return signals_of(detector, Exchange("r", question, output))[name].value


# --- the encoder ----------------------------------------------------------------------------


def test_the_encoder_agrees_with_sentence_transformers() -> None:
    texts = ["Paris is the capital of France.", "I'm sorry, I can't.", "", "你好 世界 🙂"]
    ours = load_encoder().encode(texts)
    theirs = load_model().encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (len(texts), DIMENSIONS)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_text_gets_the_same_floats_alone_and_among_any_others() -> None:
    # What the contract's "a batch equals single calls" rests on: fixed-shape model calls.
    encoder = load_encoder()
    texts = ["sorry", "Paris is the capital of France.", "x", "word " * 40]
    alone = [encoder.encode([t])[0] for t in texts]
    others = [f"filler sentence number {i} " * (1 + i % 9) for i in range(2 * MODEL_BATCH + 5)]
    mixed = encoder.encode([*others[:70], *texts, *others[70:], texts[0]])
    for i, text in enumerate(texts):
        assert np.array_equal(mixed[70 + i], alone[i]), text
    assert np.array_equal(mixed[-1], alone[0])  # a repeated text, encoded once


def test_texts_are_cut_at_the_token_bound() -> None:
    encoder = load_encoder()
    long = "alpha beta gamma delta " * 200
    cut = encoder.encode([long, long[: len(long) // 2]])
    assert np.array_equal(cut[0], cut[1])  # both past MAX_TOKENS: the same first tokens
    assert MAX_TOKENS <= 256


# --- the signals ----------------------------------------------------------------------------


def test_a_typical_answer_gets_every_signal(detector: MiniLMEmbeddingDetector) -> None:
    found = signals_of(
        detector,
        Exchange("r", "How tall is the Eiffel Tower?", "It is 330 metres tall.", CONTEXT),
    )
    assert set(found) == {"embedding", "refusal_similarity", "relevance", "semantic_grounding"}
    vector = found["embedding"].vector
    assert found["embedding"].value == 1.0
    assert len(vector) == DIMENSIONS
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, abs_tol=1e-5)
    for signal in found.values():
        assert (signal.detector, signal.version) == ("minilm_embeddings", "1")
        assert -1.0 <= signal.value <= 1.0


def test_a_one_sentence_output_embedding_is_that_sentence_embedding(
    detector: MiniLMEmbeddingDetector,
) -> None:
    text = "Paris is the capital of France."
    found = signals_of(detector, Exchange("r", "", text))
    expected = load_encoder().encode([text])[0]
    assert np.allclose(found["embedding"].vector, expected, atol=1e-6)


def test_a_refusal_scores_higher_refusal_similarity_than_an_answer(
    detector: MiniLMEmbeddingDetector,
) -> None:
    answers = [
        "Paris is the capital of France.",
        "Here is the recipe: mix flour, water and salt, then bake for 40 minutes.",
    ]
    # Phrasings none of refusal_patterns' patterns match.
    refusals = [
        "I'm afraid that's not something I can do.",
        "That is not a request I am going to fulfil. Perhaps ask something else.",
    ]
    top_answer = max(value(detector, "refusal_similarity", a) for a in answers)
    low_refusal = min(value(detector, "refusal_similarity", r) for r in refusals)
    assert low_refusal > top_answer
    # A refusal first, an answer after: still scored as one (its first sentences count).
    mixed = "I'm sorry, but I can't help with that. " + answers[1]
    assert value(detector, "refusal_similarity", mixed) > 0.9


def test_an_on_topic_answer_is_more_relevant_than_an_off_topic_one(
    detector: MiniLMEmbeddingDetector,
) -> None:
    question = "What is the capital of France?"
    on_topic = value(detector, "relevance", "The capital of France is Paris.", question)
    off_topic = value(detector, "relevance", "Bananas are rich in potassium.", question)
    assert on_topic > 0.6 > 0.2 > off_topic
    # The prompt's last line is the question (the user's message comes last).
    long_prompt = "You are a gardener who loves roses.\n" * 100 + question + "\n \n"
    assert value(detector, "relevance", "The capital of France is Paris.", long_prompt) > 0.6


def test_no_question_no_relevance(detector: MiniLMEmbeddingDetector) -> None:
    assert "relevance" not in signals_of(detector, Exchange("r", " \n\t", "Paris."))
    assert "relevance" in signals_of(detector, Exchange("r", "Where?\n\n", "Paris."))


def test_the_sentence_the_context_does_not_support_is_named(
    detector: MiniLMEmbeddingDetector,
) -> None:
    output = (
        "The Eiffel Tower stands in Paris. It was finished in 1889. "
        "Bananas are rich in potassium. Yes."
    )
    found = signals_of(detector, Exchange("r", "Tell me about the tower", output, CONTEXT))
    grounding = found["semantic_grounding"]
    # "Yes." is too short to judge: two of three judged sentences are supported.
    assert grounding.value == pytest.approx(2 / 3)
    [finding] = grounding.findings
    assert (finding.kind, finding.where) == ("unsupported_sentence", "output")
    assert output[finding.start : finding.end] == "Bananas are rich in potassium."
    assert 0.0 <= finding.score <= 1.0


def test_no_context_no_semantic_grounding(detector: MiniLMEmbeddingDetector) -> None:
    for context in (None, "", "   \n "):
        found = signals_of(detector, Exchange("r", "q", "The tower is in Paris.", context))
        assert "semantic_grounding" not in found
        assert "embedding" in found
    # Nothing long enough to judge: no grounding either.
    assert "semantic_grounding" not in signals_of(detector, Exchange("r", "q", "Yes.", CONTEXT))


# --- sampling -------------------------------------------------------------------------------


def test_the_sample_is_stable_by_request_id() -> None:
    exchanges = [Exchange(f"req-{i}", "q", f"Answer number {i}.") for i in range(40)]
    half = MiniLMEmbeddingDetector(0.5)
    first = half.detect(exchanges)
    picked = [bool(signals) for signals in first]
    assert picked == [sampled(e.request_id, 0.5) for e in exchanges]
    assert 0 < sum(picked) < len(exchanges)
    # A replay, in another order and other batches, samples the same responses alike.
    assert [half.detect([e])[0] for e in exchanges] == first
    assert half.detect(exchanges[::-1]) == first[::-1]
    # What is sampled is judged as at rate 1.
    whole = MiniLMEmbeddingDetector(1.0).detect(exchanges)
    assert [w if p else [] for w, p in zip(whole, picked, strict=True)] == first
    assert MiniLMEmbeddingDetector(0.0).detect(exchanges) == [[] for _ in exchanges]


def test_the_rate_is_bounded_and_set_by_the_worker_settings() -> None:
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError):
            MiniLMEmbeddingDetector(bad)
    assert MiniLMEmbeddingDetector().with_sample_rate(0.25).sample_rate == 0.25
    built = create_detectors(["lengths", "minilm_embeddings"], sample_rates={"embedding": 0.3})
    assert [getattr(d, "sample_rate", None) for d in built] == [None, 0.3]
    settings = Settings(
        detectors=["minilm_embeddings", "refusal_patterns"], embedding_sample_rate=0.125
    )
    [embedding, refusal] = configured_detectors(settings)
    assert isinstance(embedding, MiniLMEmbeddingDetector)
    assert embedding.sample_rate == 0.125
    assert refusal.name == "refusal_patterns"


# --- hostile texts --------------------------------------------------------------------------


def test_a_huge_text_is_read_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str] = []
    encoder = load_encoder()
    real = encoder.encode

    def counting(texts: list[str]) -> np.ndarray:
        encoded.extend(texts)
        return real(texts)

    monkeypatch.setattr(encoder, "encode", counting)
    detector = MiniLMEmbeddingDetector()
    huge = "A claim about the tower. " * (MEGABYTE // 25)
    no_breaks = "x" * MEGABYTE
    question = "q" * MEGABYTE
    detector.detect([Exchange("a", question, huge, context=huge), Exchange("b", "", no_breaks)])
    assert len(encoded) <= 2 * MAX_OUTPUT_SENTENCES + MAX_CONTEXT_SENTENCES + 1
    assert max(len(t) for t in encoded) <= max(MAX_SENTENCE_CHARS, embeddings.MAX_QUESTION_CHARS)


def test_empty_binary_and_unicode_texts_do_not_raise(detector: MiniLMEmbeddingDetector) -> None:
    exchanges = [
        Exchange("empty", "", ""),
        Exchange("blank", "  ", " \n\t ", context=" "),
        Exchange("binary", "\x00", bytes(range(256)).decode("latin-1"), context="\x00\x01"),
        Exchange("surrogate", "\ud800?", "lone \udfff surrogate. \ud83d", context="\udc00 x"),
        Exchange("unicode", "¿Qué?", "Ünïcödé 👩‍👩‍👧 שלום مرحبا e\u0301. 你好世界。", "你好 世界"),
        Exchange("control", "\x1b[31m", "\x00\x07\x1b[31m\x7f\u200b\u2028\ufeff"),
    ]
    results = detector.detect(exchanges)
    assert results[0] == [] and results[1] == []  # no text: nothing measured
    for exchange, signals in zip(exchanges[2:], results[2:], strict=True):
        names = {s.name for s in signals}
        assert {"embedding", "refusal_similarity"} <= names, exchange.request_id
        for signal in signals:
            assert math.isfinite(signal.value)
            assert all(math.isfinite(v) for v in signal.vector)
            for finding in signal.findings:
                assert 0 <= finding.start < finding.end <= len(exchange.output)
