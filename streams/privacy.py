"""What of the text that passes through is kept at rest (Settings.store_text). Pure.

Every stored field that can hold what a user or a model wrote goes through one TextPolicy
when its row is built (streams/rows.py): a response's text, a dead letter's original bytes,
its key (the app's sticky key: a user or session id) and its header values. Request
messages, prompt variables and context are never stored (only counts and flags), so the
policy has nothing to drop there.

- `redacted` (the default): text kept with the personal data the cheap-tier recognisers find
  (streams/detectors/pii.py) replaced by typed placeholders such as `<EMAIL>`. Bytes that are
  not text (a dead letter's payload) cannot be redacted reliably and are dropped.
- `raw`: kept as it came (for a store locked down as tightly as the data deserves).
- `none`: dropped (empty); lengths, counts and flags stay, so metrics are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llmops.config import StoreText
from streams.detectors.pii import redact

# Text in, the same text with personal data masked out.
Redactor = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class TextPolicy:
    keep_raw: bool = True
    redactor: Redactor | None = None  # used only when not keep_raw

    def text(self, value: str) -> str:
        if self.keep_raw:
            return value
        return self.redactor(value) if self.redactor is not None and value else ""

    def raw_bytes_b64(self, value: str) -> str:
        """Base64 of original bytes: kept only raw (bytes are not text to redact)."""
        return value if self.keep_raw else ""

    def header_values(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Header names stay (they say what a record was); values follow `text`."""
        return {name: self.text(value) for name, value in headers.items()}


RAW = TextPolicy()
NONE = TextPolicy(keep_raw=False)
REDACTED = TextPolicy(keep_raw=False, redactor=redact)

_POLICIES: dict[StoreText, TextPolicy] = {"raw": RAW, "none": NONE, "redacted": REDACTED}


def text_policy(store_text: StoreText) -> TextPolicy:
    return _POLICIES[store_text]
