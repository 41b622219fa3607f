"""The webhook body: what a person reads in Slack, escaped and within Slack's limits."""

from __future__ import annotations

import json
from typing import Any

from streams.alerting.slack import (
    MAX_FALLBACK,
    MAX_FIELD,
    MAX_HEADER,
    MAX_SECTION,
    escape,
    slack_message,
)
from tests.unit.streams.alerting.kit import alert


def texts(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def test_open_alert_shows_severity_subject_message_evidence_and_window() -> None:
    message = slack_message(alert())
    assert message["text"].startswith(":red_circle: [OPEN] critical safety/refusal_rate: ")
    assert "support v3 / pool a" in message["text"]
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "CRITICAL alert open: refusal_rate"},
    }
    body = texts(message)
    for shown in (
        "refusal rate 0.31 above 0.10",
        "*Severity*\\ncritical",
        "*Subject*\\nsupport v3 / pool a",
        "2026-12-02 04:00:00 UTC → 2026-12-02 04:01:00 UTC",
        "• threshold: 0.10",
        "• value: 0.31",
        "prompt=support, version=3, pool=a",
        "alert a1",
    ):
        assert shown in body, shown


def test_resolved_alert_says_so() -> None:
    message = slack_message(alert(state="resolved", severity="warning"))
    assert message["text"].startswith(":white_check_mark: [RESOLVED] warning ")
    assert message["blocks"][0]["text"]["text"] == "WARNING alert resolved: refusal_rate"
    assert "*State*\\nresolved" in texts(message)


def test_no_window_no_evidence() -> None:
    message = slack_message(alert(window_start=None, window_end=None, evidence={}))
    body = texts(message)
    assert "*Window*\\n-" in body
    assert "Evidence" not in body


def test_data_cannot_mention_link_or_format() -> None:
    hostile = "<!channel> <https://evil.example|click> & co"
    message = slack_message(alert(subject=hostile, message=hostile, evidence={"segment": hostile}))
    body = texts(message)
    assert "<!channel>" not in body and "<https://" not in body
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; co" in body
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_long_values_are_cut_to_slacks_limits() -> None:
    long = "x" * 4096
    message = slack_message(
        alert(
            rule="r" * 128,
            subject="s" * 512,
            message=long,
            evidence={f"k{i}": "v" * 512 for i in range(32)},
        )
    )
    header, text_section, fields, evidence = message["blocks"][:4]
    assert len(header["text"]["text"]) <= MAX_HEADER
    assert len(text_section["text"]["text"]) <= MAX_SECTION
    assert len(evidence["text"]["text"]) == MAX_SECTION
    assert evidence["text"]["text"].endswith("…")
    assert all(len(field["text"]) <= MAX_FIELD for field in fields["fields"])
    assert len(fields["fields"]) <= 10
    assert len(message["text"]) <= MAX_FALLBACK
