"""What a judge wrote -> a verdict and a score. Pure; never raises on any text.

Judges write the asked-for lines with variations: markdown (`**VERDICT:** PASS`), other
separators (`Score = 4/5`, `Verdict - fail`), any case, surrounding prose, the lines in either
order, a reasoning that quotes the format first. Rules:
- a verdict line is a line whose label is VERDICT followed by PASS or FAIL (a line naming both,
  "PASS or FAIL", is the format quoted, not a verdict); a score line is SCORE followed by a
  whole number 1-5, optionally "/5" or "out of 5";
- the last such line of each kind counts (a judge that reasons first and decides last);
- no verdict line -> "unparsed" (the score, if any, is still kept); a score outside 1-5 (or
  negative), a fraction or a word -> no score.
Only the last MAX_PARSED_CHARS characters are read: the lines are asked for at the end.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

from streams.detectors.base import Signal

VerdictKind = Literal["pass", "fail", "unparsed"]
MAX_PARSED_CHARS: Final = 4_000

# Within one line (no \n: a scan from each line start then stays linear): spaces, markdown.
_DECOR: Final = r"[ \t\r*_`#>|\-]*+"
_VERDICT: Final = re.compile(
    rf"^{_DECOR}verdict{_DECOR}[:=\-]?{_DECOR}(pass|fail)(?:ed)?\b[ \t\r*_`.!|]*+$",
    re.IGNORECASE | re.MULTILINE,
)
_SCORE: Final = re.compile(
    rf"^{_DECOR}score{_DECOR}[:=\-]?{_DECOR}(?<!-)([1-5])(?:\s*(?:/\s*5|out\s+of\s+5))?\b(?![.,]\d)"
    r"[ \t\r*_`.!|]*+$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: VerdictKind
    score: int | None = None  # 1..5 when the judge gave one

    @property
    def passed(self) -> bool | None:
        return None if self.verdict == "unparsed" else self.verdict == "pass"


def parse_verdict(text: str) -> Verdict:
    """The verdict and score `text` ends with (module docstring)."""
    tail = unicodedata.normalize("NFKC", text[-MAX_PARSED_CHARS:])
    verdicts = _VERDICT.findall(tail)
    scores = _SCORE.findall(tail)
    score = int(scores[-1]) if scores else None
    if not verdicts:
        return Verdict("unparsed", score)
    return Verdict("pass" if verdicts[-1].lower() == "pass" else "fail", score)


# A verdict's own row in `responses` carries the parsed verdict as signals, stamped as any
# detector's are; migration 013's view turns them into the `judgements` row.
VERDICT_PARSER: Final = "judge_verdict"
VERDICT_PARSER_VERSION: Final = "1"


def verdict_signals(verdict: Verdict) -> list[Signal]:
    """`judge_parsed` (1/0, always: it marks the row a verdict), `judge_pass` (1/0) when a
    verdict was parsed, `judge_score` (1..5) when a score was."""
    found = [_signal("judge_parsed", 0.0 if verdict.passed is None else 1.0)]
    if verdict.passed is not None:
        found.append(_signal("judge_pass", 1.0 if verdict.passed else 0.0))
    if verdict.score is not None:
        found.append(_signal("judge_score", float(verdict.score)))
    return found


def _signal(name: str, value: float) -> Signal:
    return Signal(name, value, VERDICT_PARSER, VERDICT_PARSER_VERSION)
