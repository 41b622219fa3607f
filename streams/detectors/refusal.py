"""Refusals by pattern: the cheap tier's answer to "is the model refusing more?".

Each pattern has an id, reported as the finding kind `refusal:<id>`, so a rise in refusals can
be traced to the phrasing that rose. Every pattern needs the model speaking of itself ("I",
"As an AI", "my guidelines"): a bare "can't" is not a refusal ("you can't divide by zero").
Matching ignores case, tolerates any whitespace between words and typographic apostrophes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from streams.detectors.base import Detector, Exchange, Finding, Signal

# Typographic apostrophes map one character to one, so match offsets stay offsets into the
# original output.
_APOSTROPHES: Final = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})

_I: Final = r"\bI(?:'m| am)?"
_CANT: Final = r"(?:can'?t|cannot|can not|won'?t|will not|must not|shouldn'?t)"
_UNABLE: Final = r"(?:unable|not able|not allowed|not permitted|not comfortable) to"
_ASSIST: Final = r"(?:help|assist|comply|fulfill?|support|engage|participate)"
_PRODUCE: Final = r"(?:provide|give|share|create|generate|write|produce|offer|disclose|answer)"

# (id, pattern); a space in a pattern stands for any run of whitespace. Ordered by how often
# they are seen, so the first finding is the likeliest cause.
PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    # "I can't help with that", "I won't assist"; not the idiom "I can't help but ..."
    ("cannot_help", rf"{_I} {_CANT} {_ASSIST}\b(?! but\b)"),
    # "I cannot provide", "I can't write that"
    ("cannot_provide", rf"{_I} {_CANT} {_PRODUCE}\b"),
    # "I'm unable to", "I am not able to", "I'm not comfortable to"
    ("unable_to", rf"{_I} {_UNABLE}\b"),
    # "As an AI language model", "as an AI assistant, I ..."
    ("as_an_ai", r"\bas an (?:AI|artificial intelligence)\b(?: language model| model| assistant)?"),
    # "I'm sorry, but I can't", "I apologize, but I won't", "Sorry, I cannot"
    (
        "apology_refusal",
        rf"\b(?:sorry|I apologi[sz]e)\s*+[,.!]?(?: but)? {_I} (?:{_CANT}|{_UNABLE})",
    ),
    # "against my guidelines", "violates our content policy", "contrary to OpenAI's policies"
    (
        "policy",
        r"\b(?:against|violat\w*+|contrary to|prohibited by|not allowed by) "
        r"(?:my|our|the|OpenAI's|Anthropic's) (?:(?:content|usage|safety|ethical|use) )?"
        r"(?:guidelines?|polic(?:y|ies)|rules|principles)\b",
    ),
)


def _compile(pattern: str) -> re.Pattern[str]:
    # Possessive whitespace: each run is scanned once, so no input (a megabyte of spaces after
    # "sorry") makes matching quadratic.
    return re.compile(pattern.replace(" ", r"\s++"), re.IGNORECASE)


_COMPILED: Final = tuple((pid, _compile(p)) for pid, p in PATTERNS)

# Words without which a pattern cannot match (casefolded). Most answers hold none of them, so
# a substring test over the folded text skips the regex scans that cost the most.
_NEEDS: Final[dict[str, tuple[str, ...]]] = {
    "cannot_help": ("can", "won", "will not", "must not", "shouldn"),
    "cannot_provide": ("can", "won", "will not", "must not", "shouldn"),
    "unable_to": ("unable", "able", "allowed", "permitted", "comfortable"),
    "as_an_ai": ("as an",),
    "apology_refusal": ("sorry", "apologi"),
    "policy": ("guideline", "polic", "rules", "principles"),
}


def find_refusals(text: str) -> list[Finding]:
    """The first match of each pattern in `text`, in pattern order."""
    text = text.translate(_APOSTROPHES)
    # Only to decide which patterns to run: matching and offsets use the text itself (casefold
    # can change a string's length, and the whitespace a needed phrase holds may vary).
    lowered = " ".join(text.casefold().split())
    findings = []
    for pid, pattern in _COMPILED:
        if not any(word in lowered for word in _NEEDS[pid]):
            continue
        match = pattern.search(text)
        if match is not None:
            findings.append(Finding(f"refusal:{pid}", "output", match.start(), match.end()))
    return findings


class RefusalDetector(Detector):
    """Signal `refusal`: 1 when any pattern matches the output, else 0; findings name them."""

    name = "refusal_patterns"
    version = "1"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        out = []
        for exchange in exchanges:
            findings = find_refusals(exchange.output)
            out.append([self.signal("refusal", 1.0 if findings else 0.0, findings)])
        return out
