from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from llmops.evals.assertions import Result
from llmops.evals.junit import MAX_ATTR, junit_xml, report_data, report_json, xml_safe
from llmops.evals.scoring import Scored, SuiteSummary, compare, score_result, summarize
from llmops.evals.suite import load_suite

SUITE = load_suite(
    """
name: support
prompt: p@1
threshold: 1.0
min_pass_rate: 0.5
cases:
  - id: ok
    assertions: [{type: contains, value: "yes"}]
  - id: bad
    assertions: [{type: contains, value: "<&\\"'>"}, {type: length, max_chars: 3}]
  - id: broken
    assertions: [{type: json_valid}]
"""
)
OK, BAD, BROKEN = SUITE.cases
HOSTILE = "]]> <x a='1'> & \x00\x1b\ud800 \u202e 日本語 🙂 " + "z" * 50_000


def _run(repeats: int = 1) -> tuple[SuiteSummary, list[Scored]]:
    scored = []
    for r in range(repeats):
        scored.append(
            score_result(SUITE, OK, Result("yes" if r == 0 else "no", latency_ms=1500.0), r)
        )
        scored.append(score_result(SUITE, BAD, Result(HOSTILE, latency_ms=20.0), r))
        scored.append(score_result(SUITE, BROKEN, Result("", error="pool timeout <&>"), r))
    return summarize(SUITE, scored), scored


def test_junit_structure_that_jenkins_and_gitlab_read() -> None:
    summary, scored = _run()
    text = junit_xml(summary, scored)
    assert text.startswith("<?xml") and "&lt;&amp;&quot;" in text
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    for element in (root, suite):
        assert element.get("name") == "support"
        assert (element.get("tests"), element.get("failures"), element.get("errors")) == (
            "3",
            "1",
            "1",
        )
        assert element.get("skipped") == "0"
        assert float(element.get("time", "x")) == 1.52
    assert [child.tag for child in suite] == ["properties", "testcase", "testcase", "testcase"]
    props = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
    assert props["verdict"] == "fail" and props["pass_rate"] == "0.3333"
    ok, bad, broken = suite.findall("testcase")
    for case, name in ((ok, "ok"), (bad, "bad"), (broken, "broken")):
        assert case.get("classname") == "support" and case.get("name") == name
        assert float(case.get("time", "x")) >= 0
    assert ok.get("time") == "1.500"
    assert list(ok) == []
    (failure,) = bad.findall("failure")
    message = failure.get("message", "")
    assert message.startswith("score 0.000 below threshold: contains: output lacks")
    assert '<&"' in message  # escaped in the file, intact once parsed
    assert len(message) <= MAX_ATTR
    assert "FAIL length (weight 1): output has" in (failure.text or "")
    (error,) = broken.findall("error")
    assert error.get("message") == "pool timeout <&>" and error.get("type") == "platform_error"


def test_hostile_text_gives_well_formed_xml() -> None:
    summary, scored = _run()
    text = junit_xml(summary, scored)
    assert "\x00" not in text and "\ud800" not in text
    root = ET.fromstring(text)  # parses: control characters and surrogates were replaced
    body = root.find("testsuite/testcase[@name='bad']/failure")
    assert body is not None and body.text is not None
    assert "日本語 🙂" in xml_safe(HOSTILE, 1000) and "\ufffd" in xml_safe(HOSTILE, 1000)
    assert len(xml_safe(HOSTILE, 100)) == 100


def test_repeats_are_named() -> None:
    summary, scored = _run(repeats=2)
    root = ET.fromstring(junit_xml(summary, scored))
    names = [c.get("name") for c in root.iter("testcase")]
    assert names[:3] == ["ok [repeat 0]", "bad [repeat 0]", "broken [repeat 0]"]
    assert root.get("tests") == "6" and root.get("failures") == "3"
    assert dict((p.get("name"), p.get("value")) for p in root.iter("property"))["flaky"] == "ok"


def test_json_report_round_trips() -> None:
    summary, scored = _run(repeats=2)
    comparison = compare(scored, scored)
    data = json.loads(report_json(summary, scored, comparison))
    assert data == json.loads(json.dumps(report_data(summary, scored, comparison)))
    assert data["suite"] == "support" and data["passed"] is False
    assert data["flaky"] == ["ok"] and data["failed"] == ["ok", "bad", "broken"]
    ok = data["cases"][0]
    assert (ok["n"], ok["passes"], ok["pass_at_k"], ok["pass_hat_k"]) == (2, 1, 1.0, 0.0)
    assert data["results"][1]["checks"][0]["type"] == "contains"
    assert data["results"][2]["error"] == "pool timeout <&>"
    assert data["comparison"]["mcnemar_p"] == 1.0
    assert data["comparison"]["verdict"].startswith("no detectable difference")
    assert "comparison" not in report_data(summary, scored)
