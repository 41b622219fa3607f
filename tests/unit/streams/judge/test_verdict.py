"""parse_verdict on what judges really write, and on hostile text: never raises."""

from __future__ import annotations

import time

import pytest

from streams.judge.verdict import MAX_PARSED_CHARS, Verdict, parse_verdict, verdict_signals

# "SCORE: 4" and "VERDICT: FAIL" in fullwidth forms, as some tokenizers emit them.
FULLWIDTH = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in "SCORE:4\nVERDICT:FAIL")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SCORE: 4\nVERDICT: PASS", Verdict("pass", 4)),
        ("It is supported by the context.\n\nSCORE: 5\nVERDICT: PASS\n", Verdict("pass", 5)),
        ("SCORE: 2\r\nVERDICT: FAIL\r\n", Verdict("fail", 2)),
        ("**SCORE:** 3\n**VERDICT:** FAIL", Verdict("fail", 3)),
        ("- **Score**: 3 out of 5\n- **Verdict**: Pass", Verdict("pass", 3)),
        ("Score = 4/5\nverdict - passed.", Verdict("pass", 4)),
        ("### Verdict: FAILED", Verdict("fail", None)),
        ("`VERDICT: PASS`", Verdict("pass", None)),
        ("VERDICT:PASS\nSCORE:1", Verdict("pass", 1)),
        ("verdict: pass", Verdict("pass", None)),
        # Fullwidth forms, as some tokenizers emit them.
        (FULLWIDTH, Verdict("fail", 4)),
        # The judge reasons first, quoting the format, and decides last: the last line counts.
        (
            "I must end with SCORE: <1-5> and VERDICT: PASS or FAIL.\nVERDICT: PASS\n"
            "On reflection, the second claim is unsupported.\nSCORE: 2\nVERDICT: FAIL",
            Verdict("fail", 2),
        ),
    ],
)
def test_real_looking_verdicts(text: str, expected: Verdict) -> None:
    assert parse_verdict(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello! How can I help you today?",  # what a non-judge model writes
        "VERDICT: PASS or FAIL",  # the format quoted, not a verdict
        "VERDICT: <PASS or FAIL>",
        "VERDICT: maybe",
        "The verdict: pass, I think, but",  # not a verdict line
        "VERDICTS: PASS",
        "PASS",
        "SCORE: 5",  # a score alone is no verdict
        "\x00\x01VERDICT\x00: PASS",
        "\ud800VERDICT: \udfff",
    ],
)
def test_anything_else_is_unparsed(text: str) -> None:
    assert parse_verdict(text).verdict == "unparsed"


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("SCORE: 4\nVERDICT: PASS", 4),
        ("SCORE: 0\nVERDICT: PASS", None),
        ("SCORE: 6\nVERDICT: PASS", None),
        ("SCORE: 4.5\nVERDICT: PASS", None),
        ("SCORE: 45\nVERDICT: PASS", None),
        ("SCORE: four\nVERDICT: PASS", None),
        ("SCORE: -3\nVERDICT: PASS", None),
        ("SCORE: 3/10\nVERDICT: PASS", None),
    ],
)
def test_only_whole_scores_from_one_to_five(text: str, score: int | None) -> None:
    assert parse_verdict(text) == Verdict("pass", score)


def test_only_the_tail_is_read() -> None:
    assert parse_verdict("VERDICT: PASS\n" + "x" * MAX_PARSED_CHARS).verdict == "unparsed"
    assert parse_verdict("x" * 1_000_000 + "\nVERDICT: FAIL").verdict == "fail"


@pytest.mark.parametrize(
    "text",
    [
        "\n" * 100_000 + "VERDICT: PASS",
        "verdict" + " " * 100_000,
        "verdict " + "- " * 50_000,
        "score: " + "1" * 100_000,
        "*" * 100_000,
        "SCORE: 1\n" * 50_000,
    ],
)
def test_hostile_text_is_parsed_in_linear_time(text: str) -> None:
    started = time.process_time()
    parse_verdict(text)
    # Not a timing threshold on the machine: a quadratic scan of these would take seconds.
    assert time.process_time() - started < 5


def test_signals_mark_the_row_a_verdict() -> None:
    def named(verdict: Verdict) -> dict[str, float]:
        return {s.name: s.value for s in verdict_signals(verdict)}

    assert named(Verdict("pass", 4)) == {"judge_parsed": 1, "judge_pass": 1, "judge_score": 4}
    assert named(Verdict("fail", None)) == {"judge_parsed": 1, "judge_pass": 0}
    assert named(Verdict("unparsed", 3)) == {"judge_parsed": 0, "judge_score": 3}
    assert {(s.detector, s.version) for s in verdict_signals(Verdict("pass"))} == {
        ("judge_verdict", "1")
    }
