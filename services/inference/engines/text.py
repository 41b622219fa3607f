"""Pure text helpers shared by the engines: prompt rendering, incremental decoding, stop strings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

Messages = Sequence[tuple[str, str]]
Decode = Callable[[Sequence[int]], str]

# A decoder emits U+FFFD for a byte sequence cut in the middle of a UTF-8 character.
REPLACEMENT_CHAR = "\ufffd"


def render_plain(messages: Messages) -> str:
    """Rendering for base models without a chat template: the contents, one per line."""
    return "".join(f"{content}\n" for _, content in messages)


def count_words(text: str) -> int:
    """The fake engine's token: a whitespace-separated word."""
    return len(text.split())


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas whose concatenation is the full decode.

    Each step decodes a short window (from the last emitted boundary) rather than the whole
    sequence, and holds a delta back while it ends in a partial UTF-8 character. Comparing two
    decodes that start at the same token keeps tokenizers that treat a sequence's first token
    specially (leading-space stripping) consistent. `context` (e.g. the prompt's last ids) is
    decoded with the output so the first token gets the spacing it has in context.
    """

    def __init__(self, decode: Decode, context: Sequence[int] = ()) -> None:
        self._decode = decode
        self._ids: list[int] = list(context)
        self._prefix = 0  # start of the window decoded each step
        self._read = len(self._ids)  # end of the text already emitted
        self._generated = 0

    @property
    def generated(self) -> int:
        """How many ids were pushed (context excluded)."""
        return self._generated

    def push(self, ids: Sequence[int]) -> str:
        """Add ids; return the text they complete (possibly empty, held for more bytes)."""
        self._ids.extend(ids)
        self._generated += len(ids)
        return self._advance(final=False)

    def flush(self) -> str:
        """Emit whatever is held back, partial characters included (the output is over)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        emitted = self._decode(self._ids[self._prefix : self._read])
        full = self._decode(self._ids[self._prefix :])
        if not final and (len(full) <= len(emitted) or full.endswith(REPLACEMENT_CHAR)):
            return ""
        delta = full[len(emitted) :]
        self._prefix, self._read = self._read, len(self._ids)
        return delta


class StopScanner:
    """Cuts streamed text at the first stop string, never emitting any part of it.

    Text that could be the start of a stop string is held back until the next delta decides.
    Invariant: no occurrence of a stop string ever starts inside the emitted text.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add a delta; return the text safe to emit. Sets `stopped` once a stop string is seen."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        self._pending += text
        cut = first_stop(self._pending, self._stops)
        if cut is not None:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        hold = held_suffix(self._pending, self._stops)
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return out

    def flush(self) -> str:
        """The output ended without a stop string: release what was held back."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in `text`, or None."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def held_suffix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
