"""Lexical grounding: which output sentences the context's words support."""

from __future__ import annotations

import pytest

from streams.detectors.base import Exchange
from streams.detectors.grounding import (
    SUPPORT_THRESHOLD,
    GroundingDetector,
    content_words,
    sentences,
)

CONTEXT = "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall."


def grounding(output: str, context: str | None = CONTEXT) -> list[tuple[float, list[str]]]:
    (signals,) = GroundingDetector().detect([Exchange("r", "q", output, context=context)])
    return [(s.value, [output[f.start : f.end] for f in s.findings]) for s in signals]


def test_content_words_drop_stopwords_case_and_plural_s() -> None:
    assert content_words("The Cats AND the dog's bones, 1889!") == {"cat", "dog", "bone", "1889"}
    assert content_words("glass is class") == {"glass", "class"}  # "ss" is not a plural
    assert content_words("") == set()
    assert content_words("你好 世界") == {"你好", "世界"}


def test_sentences_split_at_end_marks_and_line_breaks_with_stripped_spans() -> None:
    text = "  One.  Two?! Three\nFour 3.14 five.\n\n"
    assert [text[a:b] for a, b in sentences(text)] == ["One.", "Two?!", "Three", "Four 3.14 five."]
    assert list(sentences("")) == []
    assert list(sentences(" \n\t ")) == []


def test_share_of_supported_sentences_names_the_unsupported_ones() -> None:
    output = (
        "The Eiffel Tower is in Paris. It was finished in 1889!\n"
        "It is made of chocolate and sugar. Yes."
    )
    # "finished 1889": half its words supported, which is enough; "Yes." is not judged.
    assert SUPPORT_THRESHOLD == 0.5
    assert grounding(output) == [(2 / 3, ["It is made of chocolate and sugar."])]


def test_an_unsupported_finding_scores_the_missing_share() -> None:
    (signals,) = GroundingDetector().detect(
        [Exchange("r", "", "Eiffel chocolate sugar wafers.", context=CONTEXT)]
    )
    (finding,) = signals[0].findings
    assert finding.score == pytest.approx(0.75)
    assert signals[0].value == 0.0


def test_no_signal_without_a_context_or_without_anything_to_judge() -> None:
    assert grounding("Paris.", context=None) == []
    assert grounding("Paris.", context="") == []
    assert grounding("Paris.", context="the and of") == []
    assert grounding("", context=CONTEXT) == []
    assert grounding("Yes. OK!", context=CONTEXT) == []


def test_fully_grounded_output() -> None:
    assert grounding("Paris has the Eiffel Tower. It is 330 metres tall.") == [(1.0, [])]
