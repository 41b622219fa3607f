"""Which webhook an alert goes to, and which alerts are news for it (pure parts)."""

from __future__ import annotations

import pytest
from pydantic import HttpUrl

from llmops.config import Settings
from llmops.monitoring_config import (
    DriftConfig,
    FairnessConfig,
    MonitoringSettings,
    SafetyRule,
)
from schemas.monitoring import Alert
from streams.alerting.notify import AlertNotifier, PostedStates, safety_rule_for, webhook_for
from streams.alerting.webhook import WebhookPolicy
from tests.unit.streams.alerting.kit import alert

HOOK = "https://hooks.example/services/T/B/secret"


def monitoring(**fields: object) -> MonitoringSettings:
    return MonitoringSettings.model_validate(fields)


def test_no_webhook_by_default() -> None:
    defaults = Settings().monitoring
    for kind in ("safety", "drift", "fairness", "other"):
        assert webhook_for(alert(kind=kind), defaults) is None


@pytest.mark.parametrize(
    ("rule", "rate"),
    [
        ("refusal", "refusal"),
        ("refusal_rate", "refusal"),
        ("pii_output_jump", "pii_output"),
        ("pii_output.EMAIL", "pii_output.EMAIL"),
        ("pii_output.PHONE_rate", "pii_output"),
        ("toxic:jump", "toxic"),
    ],
)
def test_safety_alert_finds_its_rule_by_rate(rule: str, rate: str) -> None:
    rules = [
        SafetyRule(rate="refusal", max_rate=0.1),
        SafetyRule(rate="pii_output", max_rate=0.01),
        SafetyRule(rate="pii_output.EMAIL", max_rate=0.01),
        SafetyRule(rate="toxic", max_rate=0.01),
    ]
    found = safety_rule_for(rule, rules)
    assert found is not None and found.rate == rate


@pytest.mark.parametrize("rule", ["refusals", "errorneous", "manual", "pii"])
def test_a_rate_that_only_starts_the_name_is_not_the_rule(rule: str) -> None:
    rules = [SafetyRule(rate="refusal", max_rate=0.1), SafetyRule(rate="error", max_rate=0.1)]
    rules.append(SafetyRule(rate="pii_output", max_rate=0.1))
    assert safety_rule_for(rule, rules) is None


def test_each_kind_goes_to_its_configuration() -> None:
    config = monitoring(
        safety=[
            SafetyRule(rate="refusal", max_rate=0.1, webhook=HttpUrl(f"{HOOK}/refusal")),
            SafetyRule(rate="error", max_rate=0.1),
        ],
        drift=DriftConfig(webhook=HttpUrl(f"{HOOK}/drift")),
        fairness=FairnessConfig(webhook=HttpUrl(f"{HOOK}/fairness")),
    )
    assert webhook_for(alert(rule="refusal_rate"), config) == f"{HOOK}/refusal"
    assert webhook_for(alert(rule="error_rate"), config) is None
    assert webhook_for(alert(kind="drift", rule="drift_latency_ms"), config) == f"{HOOK}/drift"
    assert webhook_for(alert(kind="fairness", rule="fairness_refusal"), config) == (
        f"{HOOK}/fairness"
    )
    assert webhook_for(alert(kind="manual"), config) is None


def test_settings_take_a_webhook_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_MONITORING__DRIFT__WEBHOOK", f"{HOOK}/drift")
    assert webhook_for(alert(kind="drift"), Settings().monitoring) == f"{HOOK}/drift"


def test_an_opening_and_a_resolution_are_news_once_each() -> None:
    posted = PostedStates()
    assert posted.is_news(alert())
    assert not posted.is_news(alert())
    assert posted.is_news(alert(state="resolved"))
    assert not posted.is_news(alert(state="resolved"))
    assert posted.is_news(alert(alert_id="a2"))


def test_posted_states_are_bounded() -> None:
    posted = PostedStates(limit=3)
    for i in range(10):
        posted.is_news(alert(alert_id=f"id{i}"))
    assert posted.is_news(alert(alert_id="id0"))  # forgotten: news again
    assert not posted.is_news(alert(alert_id="id9"))


async def test_notify_never_raises_on_a_broken_gauge() -> None:
    class Broken:
        def update(self, _alert: object) -> None:
            raise RuntimeError("boom")

    notifier = AlertNotifier(Settings(), gauge=Broken())  # type: ignore[arg-type]
    await notifier.notify([alert(), alert(alert_id="b")])
    await notifier.close()


def test_policy_bounds() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        WebhookPolicy(queue_size=0)
    with pytest.raises(ValueError, match="timeout_s"):
        WebhookPolicy(timeout_s=0)
    with pytest.raises(ValueError, match="attempts"):
        WebhookPolicy(attempts=0)
    policy = WebhookPolicy(backoff_s=1.0, backoff_max_s=5.0)
    assert [policy.delay(n, 0.999999) for n in (1, 2, 3, 4)] == pytest.approx([1, 2, 4, 5])
    assert policy.delay(1, 0.0) == 0.5


async def test_restored_alerts_are_on_the_gauge_and_not_posted_again() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def update(self, alert: Alert) -> None:
            self.seen.append(f"{alert.alert_id}:{alert.state}")

        def replace(self, alerts: list[Alert]) -> None:
            self.seen += [f"{alert.alert_id}:restored" for alert in alerts]

    class Sent:
        def __init__(self) -> None:
            self.bodies: list[bytes] = []

        def send(self, url: str, body: bytes) -> None:
            self.bodies.append(body)

    settings = Settings(monitoring=monitoring(drift=DriftConfig(webhook=HttpUrl(HOOK))))
    gauge = Recorder()
    notifier = AlertNotifier(settings, gauge=gauge)  # type: ignore[arg-type]
    sent = notifier.webhooks = Sent()  # type: ignore[assignment]
    drift = alert(kind="drift", rule="drift_latency_ms")
    notifier.restore([drift])
    await notifier.notify([drift])  # the monitor re-emits it: not news for the webhook
    assert gauge.seen == ["a1:restored", "a1:open"]
    assert sent.bodies == []
    await notifier.notify([drift.model_copy(update={"state": "resolved"})])
    assert len(sent.bodies) == 1
