"""Pure text helpers of the engines: incremental decoding, stop strings, plain rendering."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from services.inference.engines.text import (
    REPLACEMENT_CHAR,
    IncrementalDecoder,
    StopScanner,
    count_words,
    first_stop,
    held_suffix,
    render_plain,
)
from services.inference.models import build_tiny_tokenizer

TOKENIZER = build_tiny_tokenizer()


def _decode(ids: Sequence[int]) -> str:
    return str(TOKENIZER.decode(list(ids), skip_special_tokens=True))


def _stream(decoder: IncrementalDecoder, ids: list[int], step: int) -> list[str]:
    deltas = [decoder.push(ids[i : i + step]) for i in range(0, len(ids), step)]
    return [*deltas, decoder.flush()]


@pytest.mark.parametrize(
    "text", ["héllo wörld", "日本語のテキスト", "emoji 🚀🔥 mix", "plain ascii text"]
)
@pytest.mark.parametrize("step", [1, 2, 5])
def test_deltas_concatenate_to_full_decode(text: str, step: int) -> None:
    ids = TOKENIZER(text, add_special_tokens=False)["input_ids"]
    deltas = _stream(IncrementalDecoder(_decode), ids, step)
    assert "".join(deltas) == _decode(ids) == text


def test_partial_characters_are_held_back() -> None:
    ids = TOKENIZER("🚀", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # a 4-byte character spans several byte-level tokens
    decoder = IncrementalDecoder(_decode)
    deltas = [decoder.push([i]) for i in ids]
    assert deltas[:-1] == [""] * (len(ids) - 1)
    assert deltas[-1] == "🚀"
    assert all(REPLACEMENT_CHAR not in d for d in deltas)


def test_random_ids_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(50):
        ids = [rng.randrange(3, len(TOKENIZER)) for _ in range(rng.randrange(1, 40))]
        deltas = _stream(IncrementalDecoder(_decode), ids, rng.randrange(1, 4))
        assert "".join(deltas) == _decode(ids)


def test_flush_releases_a_truncated_character() -> None:
    ids = TOKENIZER("🚀", add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(_decode)
    assert decoder.push(ids[:1]) == ""
    assert decoder.flush() == _decode(ids[:1])  # the output ended mid-character: keep what exists
    assert decoder.flush() == ""


def test_special_tokens_produce_no_text() -> None:
    decoder = IncrementalDecoder(_decode)
    assert decoder.push([TOKENIZER.eos_token_id]) == ""
    assert decoder.flush() == ""
    assert decoder.generated == 1


def test_context_is_not_emitted() -> None:
    prompt = TOKENIZER("The capital of", add_special_tokens=False)["input_ids"]
    output = TOKENIZER(" France is", add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(_decode, context=prompt)
    text = "".join(_stream(decoder, output, 1))
    assert text == " France is"
    assert decoder.generated == len(output)


def test_window_decoding_keeps_a_stripped_leading_space() -> None:
    # A decoder that drops a sequence's leading space (as SentencePiece-style decoders do):
    # deltas come from windows starting at the same token, so no space is lost mid-text.
    words = ["Hello", " big", " world"]

    def strip_decode(ids: Sequence[int]) -> str:
        return "".join(words[i] for i in ids).lstrip(" ")

    decoder = IncrementalDecoder(strip_decode)
    assert "".join(_stream(decoder, [0, 1, 2], 1)) == "Hello big world"


def _scan(stops: Sequence[str], pieces: Sequence[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(p) for p in pieces)
    return out + scanner.flush(), scanner.stopped


@pytest.mark.parametrize(
    ("pieces", "stops", "expected", "stopped"),
    [
        (["hello world"], ["wor"], "hello ", True),
        (["hel", "lo wo", "rld"], ["o w"], "hell", True),
        (["a", "b", "c", "d"], ["bc"], "a", True),
        (["abc"], ["x"], "abc", False),
        (["ab", "ab", "ab"], ["abc"], "ababab", False),  # held prefix released at the end
        (["one two three"], ["three", "two"], "one ", True),  # the earliest stop wins
        (["xx\n", "\n", "yy"], ["\n\n"], "xx", True),
        (["stop at start"], ["stop"], "", True),
        (["no stops"], [], "no stops", False),
        (["empty stop"], [""], "empty stop", False),
    ],
)
def test_stop_scanner(pieces: list[str], stops: list[str], expected: str, stopped: bool) -> None:
    assert _scan(stops, pieces) == (expected, stopped)


def test_stop_scanner_never_emits_part_of_a_stop() -> None:
    rng = random.Random(3)
    alphabet = "ab "
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        stops = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 4)))]
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(3, len(text) + 1)))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        out, stopped = _scan(stops, pieces)
        index = text.find(stops[0])
        assert (out, stopped) == ((text[:index], True) if index >= 0 else (text, False))


def test_stop_scanner_ignores_input_after_stopping() -> None:
    scanner = StopScanner(["!"])
    assert scanner.feed("hi! there") == "hi"
    assert scanner.feed("more") == ""
    assert scanner.flush() == ""


def test_first_stop_and_held_suffix() -> None:
    assert first_stop("abcabc", ["ca", "bc"]) == 1
    assert first_stop("abc", ["x"]) is None
    assert held_suffix("hello wo", ["world"]) == 2
    assert held_suffix("hello w", ["world", "xx"]) == 1
    assert held_suffix("hello", ["world"]) == 0
    assert held_suffix("worl", ["world"]) == 4  # a proper prefix only: never the whole stop


def test_render_plain_and_count_words() -> None:
    messages = (("system", "Be brief."), ("user", "What is Kafka?"))
    assert render_plain(messages) == "Be brief.\nWhat is Kafka?\n"
    assert render_plain(()) == ""
    assert count_words(render_plain(messages)) == 5
    assert count_words("  spaced\tout \n words ") == 3
