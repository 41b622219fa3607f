"""Refusal exemplars: how models say no, for the embedding tier's `refusal_similarity`.

The embedding tier scores an answer by its highest cosine to these sentences, so a refusal
phrased in a way no pattern of streams/detectors/refusal.py knows still scores high. They
cover the usual families: plain inability, apology first, policy, "as an AI", deflection to a
professional, and partial compliance. Plain English, one refusal per sentence; changing them
changes the scores, so bump the detector's version with them.
"""

from __future__ import annotations

from typing import Final

REFUSALS: Final[tuple[str, ...]] = (
    "I'm sorry, but I can't help with that.",
    "I cannot assist with this request.",
    "I'm unable to provide that information.",
    "I won't be able to help you with that.",
    "Sorry, I can't do that.",
    "I apologize, but I cannot fulfill this request.",
    "I'm not able to answer that question.",
    "That request goes against my guidelines, so I can't help.",
    "This violates our content policy and I must decline.",
    "I must decline to answer this.",
    "As an AI language model, I cannot do that.",
    "As an AI, I don't have the ability to help with this.",
    "I'm not comfortable providing that kind of content.",
    "I can't share personal or private information about people.",
    "I cannot provide instructions for anything illegal or harmful.",
    "Unfortunately, I'm not allowed to discuss this topic.",
    "I'm afraid I can't comply with that request.",
    "I don't think I should help with this.",
    "Please consult a qualified professional instead; I can't advise on this.",
    "I can't give medical, legal or financial advice.",
    "I'd rather not answer that.",
    "Let's talk about something else instead.",
    "I can't continue with this conversation.",
    "I refuse to do that.",
)
