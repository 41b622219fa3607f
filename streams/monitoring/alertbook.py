"""The book of open alerts: one per subject, opened once, resolved when it clears. Pure.

A check hands in a `Condition` for every subject it could judge in a window (active or
not); a subject it could not judge (too little data) is left as it was. An active condition
opens an alert unless one is open for its subject; an inactive one resolves the open alert:
the same alert (same `alert_id`, state "resolved"), so its row replaces the opening's. The
id is a uuid5 of the subject and the window that opened it: a replayed window opens the
same alert again, never a second one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from llmops.monitoring_config import Severity
from schemas import Alert, QualityWindow
from schemas.base import MAX_NAME_LEN
from streams.features import GroupKey, group_key_text
from streams.monitoring.reference import group_of

ALERT_NAMESPACE = uuid.UUID("6b0f3f56-5d6e-4b8e-9a63-2f1f4c0c9a19")
MAX_SUBJECT = 512
MAX_EVIDENCE_VALUE = 512


def subject_of(rule: str, group: GroupKey, segment: str) -> str:
    """`rule|prompt|version|variant|pool|model|segment`, hashed at the end when too long."""
    text = f"{rule}|{group_key_text(group)}|{segment}"
    if len(text) <= MAX_SUBJECT:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: MAX_SUBJECT - 17]}~{digest}"


def rule_name(text: str) -> str:
    """A rule or evidence name within the contract's Name pattern and length."""
    cleaned = "".join(c if c.isalnum() or c in "_.:/-" else "_" for c in text)
    return cleaned[:MAX_NAME_LEN] or "rule"


@dataclass(frozen=True)
class Condition:
    """What one check found for one subject in one window."""

    kind: str  # "drift", "safety", "fairness"
    rule: str
    group: GroupKey
    segment: str
    active: bool
    severity: Severity
    message: str
    evidence: Mapping[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return subject_of(self.rule, self.group, self.segment)

    @classmethod
    def about(
        cls,
        window: QualityWindow,
        *,
        kind: str,
        rule: str,
        active: bool,
        severity: Severity,
        message: str,
        evidence: Mapping[str, str],
    ) -> Condition:
        """A condition of `window`'s group and segment."""
        return cls(
            kind, rule, group_of(window), window.segment, active, severity, message, evidence
        )


def window_label(window: QualityWindow, with_segment: bool = True) -> str:
    """How messages name a window's series: "support v3 (locale=de)"."""
    where = f" ({window.segment})" if with_segment and window.segment else ""
    return f"{window.prompt_name} v{window.prompt_version}{where}"


def alert_id(subject: str, opened_window: datetime | None) -> str:
    opened = opened_window.isoformat() if opened_window is not None else ""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{subject}|{opened}"))


def _evidence(evidence: Mapping[str, str]) -> dict[str, str]:
    return {rule_name(k): str(v)[:MAX_EVIDENCE_VALUE] for k, v in list(evidence.items())[:32]}


class AlertBook:
    """Open alerts by subject."""

    def __init__(self) -> None:
        self._open: dict[str, Alert] = {}

    def restore(self, alerts: Iterable[Alert]) -> None:
        """The open alerts the store holds replace the book (after a restart or a rebalance:
        another worker may have resolved what this one had open): not opened again."""
        self._open = {alert.subject: alert for alert in alerts if alert.state == "open"}

    @property
    def open_alerts(self) -> list[Alert]:
        return list(self._open.values())

    def update(
        self,
        conditions: Sequence[Condition],
        window_start: datetime,
        window_end: datetime,
    ) -> list[Alert]:
        """The alerts opened or resolved by one window's conditions."""
        changed: list[Alert] = []
        for condition in conditions:
            subject = condition.subject
            current = self._open.get(subject)
            if condition.active and current is None:
                alert = self._opened(condition, subject, window_start, window_end)
                self._open[subject] = alert
                changed.append(alert)
            elif not condition.active and current is not None:
                opened = current.window_start
                if opened is not None and window_start <= opened:
                    continue  # a replay of the opening window (or older) resolves nothing
                resolved = current.model_copy(
                    update={
                        "state": "resolved",
                        "message": f"resolved: {condition.message}"[:4096],
                        "window_end": window_end,
                        "evidence": {
                            **current.evidence,
                            "resolved_window": window_start.isoformat(),
                            **{
                                f"resolved_{k}"[:MAX_NAME_LEN]: v
                                for k, v in _evidence(condition.evidence).items()
                                if k in ("value", "statistic")
                            },
                        },
                    }
                )
                resolved = Alert.model_validate(
                    {**resolved.model_dump(), "event_id": uuid.uuid4().hex, "ts": window_end}
                )
                del self._open[subject]
                changed.append(resolved)
        return changed

    @staticmethod
    def _opened(
        condition: Condition, subject: str, window_start: datetime, window_end: datetime
    ) -> Alert:
        name, version, variant, pool, model = condition.group
        return Alert(
            ts=window_end,
            severity=condition.severity,
            kind=condition.kind,
            rule=rule_name(condition.rule),
            subject=subject,
            state="open",
            alert_id=alert_id(subject, window_start),
            opened_at=window_end,
            message=condition.message[:4096],
            prompt_name=name,
            prompt_version=version,
            variant=variant,
            pool=pool,
            model=model,
            segment=condition.segment,
            window_start=window_start,
            window_end=window_end,
            evidence=_evidence(condition.evidence),
        )
