"""Refusals by pattern: the phrasings models refuse with, and answers that only sound close."""

from __future__ import annotations

import pytest

from streams.detectors.base import Exchange
from streams.detectors.refusal import PATTERNS, RefusalDetector, find_refusals


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("I can't help with that.", "cannot_help"),
        ("I cannot assist with this request.", "cannot_help"),
        ("i WON'T comply", "cannot_help"),
        ("I can\u2019t help with that.", "cannot_help"),  # typographic apostrophe
        ("I  cannot\n\tassist", "cannot_help"),  # any whitespace between words
        ("I cannot provide medical advice.", "cannot_provide"),
        ("Unfortunately I can't write that.", "cannot_provide"),
        ("I'm unable to do that.", "unable_to"),
        ("I am not able to share personal data.", "unable_to"),
        ("As an AI language model, I have no opinions.", "as_an_ai"),
        ("as an AI assistant", "as_an_ai"),
        ("I'm sorry, but I can't do that.", "apology_refusal"),
        ("Sorry, I cannot.", "apology_refusal"),
        ("I apologise, but I'm unable to continue.", "apology_refusal"),
        ("That would violate my content policy.", "policy"),
        ("This goes against OpenAI\u2019s usage policies.", "policy"),
        ("It is contrary to my guidelines.", "policy"),
        # The quick word check folds case and whitespace as the patterns do.
        ("AS\nAN\tAI MODEL", "as_an_ai"),
        ("\u017forry, but I cannot help", "apology_refusal"),  # long s: folds to "s"
        ("I WILL\n\nNOT assist", "cannot_help"),
        ("against   our\nusage\tPOLICIES", "policy"),
    ],
)
def test_refusals_are_found_with_their_pattern(text: str, pattern: str) -> None:
    kinds = [f.kind for f in find_refusals(text)]
    assert f"refusal:{pattern}" in kinds


@pytest.mark.parametrize(
    "text",
    [
        "You can't divide by zero.",
        "I can't help but notice the loop never ends.",
        "I can't stress this enough: back up your data.",
        "They cannot provide a refund after 30 days, per the store.",
        "Sorry for the delay! Here is the summary.",
        "The model can not be unable to converge.",
        "Policy: refunds within 30 days.",
        "AI language models predict the next token.",
        "",
    ],
)
def test_answers_that_only_sound_close_are_not_refusals(text: str) -> None:
    assert find_refusals(text) == []


def test_a_finding_spans_the_matched_words() -> None:
    text = "Well. I\u2019m  unable to do that."
    (finding,) = find_refusals(text)
    assert (finding.where, text[finding.start : finding.end]) == ("output", "I\u2019m  unable to")


def test_each_pattern_is_reported_once_in_pattern_order() -> None:
    text = "As an AI model, I'm sorry, but I can't help. I can't help. Against my guidelines."
    kinds = [f.kind for f in find_refusals(text)]
    assert kinds == [
        "refusal:cannot_help",
        "refusal:as_an_ai",
        "refusal:apology_refusal",
        "refusal:policy",
    ]


def test_pattern_ids_are_unique() -> None:
    ids = [pid for pid, _ in PATTERNS]
    assert len(ids) == len(set(ids))


def test_the_detector_flags_the_output_only() -> None:
    detector = RefusalDetector()
    batch = [
        Exchange("a", "I can't help with that, can you?", "Sure, here it is."),
        Exchange("b", "", "I cannot help with that."),
    ]
    first, second = detector.detect(batch)
    assert [(s.name, s.value, s.findings) for s in first] == [("refusal", 0.0, ())]
    assert [(s.name, s.value) for s in second] == [("refusal", 1.0)]
    assert second[0].findings[0].kind == "refusal:cannot_help"
    assert (second[0].detector, second[0].version) == ("refusal_patterns", "1")


def test_whitespace_runs_do_not_make_matching_quadratic() -> None:
    # Correctness only (no timing): a pathological run still gives the right answer.
    assert find_refusals("sorry" + " " * 200_000 + "but I can't help") != []
    assert find_refusals("I" + " " * 200_000 + "x") == []
