from __future__ import annotations

from streams.monitoring.alertbook import AlertBook, Condition, alert_id, subject_of
from tests.unit.streams.monitoring.kit import at

GROUP = ("support", 3, "a", "cpu", "m")


def condition(active: bool, segment: str = "") -> Condition:
    return Condition(
        kind="safety",
        rule="refusal_rate",
        group=GROUP,
        segment=segment,
        active=active,
        severity="warning",
        message="refusal rate",
        evidence={"statistic": "rate", "value": "0.5"},
    )


def test_one_open_alert_per_subject_and_its_resolution_has_the_same_id() -> None:
    book = AlertBook()
    opened = book.update([condition(True)], at(1), at(2))
    assert [a.state for a in opened] == ["open"]
    alert = opened[0]
    assert alert.subject == "refusal_rate|support|3|a|cpu|m|"
    assert alert.alert_id == alert_id(alert.subject, at(1))
    assert alert.evidence == {"statistic": "rate", "value": "0.5"}
    assert book.update([condition(True)], at(2), at(3)) == []  # still open: not again
    resolved = book.update([condition(False)], at(3), at(4))
    assert [(a.state, a.alert_id) for a in resolved] == [("resolved", alert.alert_id)]
    assert resolved[0].evidence["resolved_window"] == at(3).isoformat()
    assert book.open_alerts == []
    reopened = book.update([condition(True)], at(5), at(6))
    assert reopened[0].alert_id != alert.alert_id  # a new opening, a new alert


def test_subjects_are_independent_and_unjudged_ones_stay_as_they_are() -> None:
    book = AlertBook()
    book.update([condition(True), condition(True, "locale=de")], at(1), at(2))
    assert len(book.open_alerts) == 2
    changed = book.update([condition(False, "locale=de")], at(2), at(3))
    assert [(a.segment, a.state) for a in changed] == [("locale=de", "resolved")]
    assert book.update([], at(3), at(4)) == []
    assert [a.segment for a in book.open_alerts] == [""]


def test_a_replay_of_the_opening_window_neither_reopens_nor_resolves() -> None:
    book = AlertBook()
    first = book.update([condition(True)], at(1), at(2))
    assert book.update([condition(True)], at(1), at(2)) == []
    assert book.update([condition(False)], at(1), at(2)) == []
    assert book.open_alerts == first


def test_restored_open_alerts_are_not_opened_again_and_resolve_later() -> None:
    opened = AlertBook().update([condition(True)], at(1), at(2))
    book = AlertBook()  # after a restart
    book.restore(opened)
    assert book.update([condition(True)], at(2), at(3)) == []
    resolved = book.update([condition(False)], at(3), at(4))
    assert [a.alert_id for a in resolved] == [opened[0].alert_id]


def test_a_long_subject_is_cut_with_a_hash() -> None:
    long_group = ("p" * 128, 1, "v" * 128, "q" * 128, "m" * 128)
    subject = subject_of("drift_latency_ms", long_group, "locale=" + "x" * 200)
    assert len(subject) == 512 and "~" in subject
    assert subject != subject_of("drift_latency_ms", long_group, "locale=" + "y" * 200)


def test_a_restore_replaces_the_book() -> None:
    book = AlertBook()
    book.update([condition(True), condition(True, "locale=de")], at(1), at(2))
    still_open = [a for a in book.open_alerts if a.segment == ""]
    book.restore(still_open)  # another worker resolved the locale=de one meanwhile
    assert book.open_alerts == still_open
    assert [a.state for a in book.update([condition(True, "locale=de")], at(3), at(4))] == ["open"]
