"""The reports CI systems read: JUnit XML (Jenkins, GitLab, GitHub) and JSON.

JUnit: testsuites > testsuite(name, tests, failures, errors, skipped, time) > testcase
(classname, name, time) > failure(message, type) or error(message, type), the checks that
failed in the element's text. A case run K times is K testcases, `case [repeat i]`. Text is
escaped by ElementTree; characters XML 1.0 cannot hold (most control characters, lone
surrogates) are replaced, so any model output gives a well-formed file. Returns strings: the
runner writes the files.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from llmops.evals.scoring import Comparison, Scored, SuiteSummary

MAX_ATTR = 1_000  # chars of a message attribute
MAX_BODY = 10_000  # chars of a failure's text

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str, limit: int) -> str:
    """`text` with characters XML 1.0 cannot hold replaced, cut to `limit` chars."""
    cut = text if len(text) <= limit else text[: limit - 3] + "..."
    return _NOT_XML.sub("\ufffd", cut)


def _seconds(ms: float | None) -> str:
    return f"{(ms or 0.0) / 1000:.3f}"


def junit_xml(summary: SuiteSummary, scored: Sequence[Scored], name: str | None = None) -> str:
    """The JUnit XML document of one suite run (`name`: the testsuite's, else the suite's)."""
    return junit_xml_many([(name or summary.suite, summary, scored)])


def junit_xml_many(runs: Sequence[tuple[str, SuiteSummary, Sequence[Scored]]]) -> str:
    """One JUnit XML document, a testsuite per (name, summary, results): the two prompt
    versions of a comparison, each its own testsuite."""
    every = [s for _, _, scored in runs for s in scored]
    title = xml_safe(" vs ".join(name for name, _, _ in runs), MAX_ATTR)
    root = ET.Element(
        "testsuites",
        name=title,
        tests=str(len(every)),
        failures=str(sum(1 for s in every if not s.passed and s.error is None)),
        errors=str(sum(1 for s in every if s.error is not None)),
        skipped="0",
        time=_seconds(sum(s.latency_ms or 0.0 for s in every)),
    )
    for name, summary, scored in runs:
        _testsuite(root, xml_safe(name, MAX_ATTR), summary, scored)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _testsuite(
    root: ET.Element, name: str, summary: SuiteSummary, scored: Sequence[Scored]
) -> None:
    repeats = max((s.repeat for s in scored), default=0) > 0
    failures = sum(1 for s in scored if not s.passed and s.error is None)
    errors = sum(1 for s in scored if s.error is not None)
    total_ms = sum(s.latency_ms or 0.0 for s in scored)
    suite = ET.SubElement(
        root,
        "testsuite",
        name=name,
        tests=str(len(scored)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=_seconds(total_ms),
    )
    # properties precede the testcases in the JUnit schema
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("pass_rate", f"{summary.pass_rate:.4f}"),
        ("mean_score", f"{summary.mean_score:.4f}"),
        ("verdict", "pass" if summary.passed else "fail"),
        ("flaky", ",".join(summary.flaky)),
    ):
        ET.SubElement(props, "property", name=key, value=xml_safe(value, MAX_ATTR))
    for s in scored:
        case_name = f"{s.case_id} [repeat {s.repeat}]" if repeats else s.case_id
        case = ET.SubElement(
            suite,
            "testcase",
            classname=name,
            name=xml_safe(case_name, MAX_ATTR),
            time=_seconds(s.latency_ms),
        )
        if s.error is not None:
            err = ET.SubElement(
                case, "error", message=xml_safe(s.error, MAX_ATTR), type="platform_error"
            )
            err.text = xml_safe(s.error, MAX_BODY)
        elif not s.passed:
            failed = [c for c in s.checks if not c.passed]
            message = f"score {s.score:.3f} below threshold: " + "; ".join(
                f"{c.type}: {c.message}" for c in failed
            )
            fail = ET.SubElement(
                case, "failure", message=xml_safe(message, MAX_ATTR), type="assertion"
            )
            fail.text = xml_safe(
                "\n".join(
                    f"{'PASS' if c.passed else 'FAIL'} {c.type} (weight {c.weight:g}): {c.message}"
                    for c in s.checks
                ),
                MAX_BODY,
            )


def report_data(
    summary: SuiteSummary, scored: Sequence[Scored], comparison: Comparison | None = None
) -> dict[str, Any]:
    """The JSON report's content: the verdict, each case's summary and each result's checks."""
    data: dict[str, Any] = {
        "suite": summary.suite,
        "passed": summary.passed,
        "pass_rate": summary.pass_rate,
        "mean_score": summary.mean_score,
        "k": summary.k,
        "flaky": list(summary.flaky),
        "failed": list(summary.failed),
        "cases": [
            {
                "id": c.case_id,
                "n": c.n,
                "passes": c.passes,
                "mean_score": c.mean_score,
                "pass_at_k": c.pass_at_k,
                "pass_hat_k": c.pass_hat_k,
                "flaky": c.flaky,
                "passed": c.passed,
            }
            for c in summary.cases
        ],
        "results": [
            {
                "case": s.case_id,
                "repeat": s.repeat,
                "score": s.score,
                "passed": s.passed,
                "error": s.error,
                "latency_ms": s.latency_ms,
                "checks": [
                    {"type": c.type, "passed": c.passed, "weight": c.weight, "message": c.message}
                    for c in s.checks
                ],
            }
            for s in scored
        ],
    }
    if comparison is not None:
        data["comparison"] = {
            "pairs": comparison.pairs,
            "a_pass_rate": comparison.a_pass_rate,
            "b_pass_rate": comparison.b_pass_rate,
            "only_a_passes": comparison.only_a_passes,
            "only_b_passes": comparison.only_b_passes,
            "mcnemar_p": comparison.mcnemar_p,
            "mean_score_diff": comparison.mean_score_diff,
            "interval": [comparison.diff_low, comparison.diff_high],
            "confidence": comparison.confidence,
            "verdict": comparison.verdict,
        }
    return data


def report_json(
    summary: SuiteSummary, scored: Sequence[Scored], comparison: Comparison | None = None
) -> str:
    """The JSON report as text (strict JSON: no NaN)."""
    return json.dumps(
        report_data(summary, scored, comparison), ensure_ascii=False, allow_nan=False, indent=2
    )
