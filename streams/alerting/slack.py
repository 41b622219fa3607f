"""Slack-compatible JSON for one alert (pure). Incoming-webhook receivers (Slack, Mattermost,
Rocket.Chat, most chat bridges) read `text`; Slack renders `blocks` when present.

Everything shown comes from data (subjects carry prompt names and segment values), so it is
escaped as Slack asks (&, <, >: no `<!channel>` mention or link can be injected) and cut to
Slack's limits (header 150, section text 3000, field 2000 characters, 10 fields).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.monitoring import Alert

MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_FALLBACK = 1000
ICON = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
RESOLVED_ICON = ":white_check_mark:"


def escape(text: str) -> str:
    """Slack's three control characters as entities: data cannot mention, link or format."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def window_text(alert: Alert) -> str:
    if alert.window_start is None and alert.window_end is None:
        return "-"
    return f"{_time(alert.window_start)} → {_time(alert.window_end)}"


def group_text(alert: Alert) -> str:
    """The prompt/version/variant/pool/model/segment the alert is about, the set parts only."""
    parts = [
        ("prompt", alert.prompt_name),
        ("version", str(alert.prompt_version) if alert.prompt_version else ""),
        ("variant", alert.variant),
        ("pool", alert.pool),
        ("model", alert.model),
        ("segment", alert.segment),
    ]
    return ", ".join(f"{name}={value}" for name, value in parts if value) or "-"


def evidence_lines(alert: Alert) -> str:
    return "\n".join(f"• {escape(key)}: {escape(value)}" for key, value in alert.evidence.items())


def headline(alert: Alert) -> str:
    """One plain line: state, severity, kind/rule, subject."""
    state = "RESOLVED" if alert.state == "resolved" else "OPEN"
    return f"[{state}] {alert.severity} {alert.kind}/{alert.rule}: {alert.subject}"


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": cut(f"*{label}*\n{escape(value)}", MAX_FIELD)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, MAX_SECTION)}}


def slack_message(alert: Alert) -> dict[str, Any]:
    """The webhook body for an alert's opening or resolution."""
    resolved = alert.state == "resolved"
    icon = RESOLVED_ICON if resolved else ICON[alert.severity]
    verb = "resolved" if resolved else "open"
    fields = [
        _field("Severity", alert.severity),
        _field("State", alert.state),
        _field("Kind / rule", f"{alert.kind} / {alert.rule}"),
        _field("Subject", alert.subject),
        _field("Window", window_text(alert)),
        _field("Opened", _time(alert.opened_at)),
        _field("Group", group_text(alert)),
    ][:MAX_FIELDS]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": cut(f"{alert.severity.upper()} alert {verb}: {alert.rule}", MAX_HEADER),
            },
        },
        _section(f"{icon} {escape(alert.message)}" if alert.message else icon),
        {"type": "section", "fields": fields},
    ]
    if alert.evidence:
        blocks.append(_section("*Evidence*\n" + evidence_lines(alert)))
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": cut(f"alert {escape(alert.alert_id or '-')} · {_time(alert.ts)}", 300),
                }
            ],
        }
    )
    fallback = f"{icon} {headline(alert)} — {alert.message}"
    return {"text": cut(escape(fallback), MAX_FALLBACK), "blocks": blocks}
