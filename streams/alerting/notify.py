"""`AlertNotifier`: every alert the monitor emits, to the gauge and to its rule's webhook.

`notify` is awaited by the monitor's agent for each batch of alerts; it only updates the gauge
and queues webhook messages, so it returns at once, and it never raises: delivery is a side
channel, the alert itself is already in `llm.alerts` and the `alerts` table.

Which webhook: a safety alert goes to the SafetyRule whose rate its rule names (the rule is
the rate, or the rate plus a suffix: "refusal", "refusal_rate", "pii_output_jump"; the
longest rate wins, so "pii_output.EMAIL" beats "pii_output"); a drift alert to
monitoring.drift.webhook, a fairness alert to monitoring.fairness.webhook. No webhook is
configured by default: nothing leaves the process unless configuration says where.

A monitor may re-emit an alert that is still open every window: the webhook hears of each
opening and each resolution once (the states last posted are remembered, boundedly).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

from llmops.config import Settings
from llmops.monitoring_config import MonitoringSettings, SafetyRule
from llmops.telemetry.ratelog import RateLimiter
from schemas.monitoring import Alert
from streams.alerting.gauge import DEFAULT_LIMIT, OpenAlertGauge, alert_key
from streams.alerting.slack import slack_message
from streams.alerting.webhook import LOG_INTERVAL_S, WebhookPolicy, Webhooks

log = logging.getLogger(__name__)

RULE_SEPARATORS = ("_", ".", ":", "-")
MAX_REMEMBERED = 10_000  # alerts whose last posted state is kept (the oldest forgotten)


def safety_rule_for(rule: str, rules: Sequence[SafetyRule]) -> SafetyRule | None:
    """The safety rule an alert's rule name refers to (longest matching rate)."""
    best: SafetyRule | None = None
    for candidate in rules:
        rate = candidate.rate
        names_it = rule == rate or (rule.startswith(rate) and rule[len(rate)] in RULE_SEPARATORS)
        if names_it and (best is None or len(rate) > len(best.rate)):
            best = candidate
    return best


def webhook_for(alert: Alert, monitoring: MonitoringSettings) -> str | None:
    """The webhook URL configured for the alert's rule; None: none (the default)."""
    if alert.kind == "safety":
        rule = safety_rule_for(alert.rule, monitoring.safety)
        url = rule.webhook if rule is not None else None
    elif alert.kind == "drift":
        url = monitoring.drift.webhook
    elif alert.kind == "fairness":
        url = monitoring.fairness.webhook
    else:
        url = None
    return None if url is None else str(url)


class PostedStates:
    """The state last posted per alert (bounded): a repeat of it is not news (pure)."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self.limit = limit
        self._states: OrderedDict[str, str] = OrderedDict()

    def is_news(self, alert: Alert) -> bool:
        key = alert_key(alert)
        if self._states.get(key) == alert.state:
            self._states.move_to_end(key)
            return False
        self._states[key] = alert.state
        self._states.move_to_end(key)
        while len(self._states) > self.limit:
            self._states.popitem(last=False)
        return True


class AlertNotifier:
    """The gauge and the webhooks of one process. Call `notify` from the event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        policy: WebhookPolicy | None = None,
        gauge: OpenAlertGauge | None = None,
        series_limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.monitoring = settings.monitoring
        self.gauge = gauge or OpenAlertGauge(series_limit)
        self.webhooks = Webhooks(policy)
        self._posted = PostedStates()
        self._limiter = RateLimiter(LOG_INTERVAL_S)

    async def notify(self, alerts: Sequence[Alert]) -> None:
        """Update the gauge and queue the webhook messages; never raises, never waits."""
        for alert in alerts:
            try:
                self._one(alert)
            except Exception as exc:  # delivery must never fail the agent that alerts
                held = self._limiter.admit(type(exc).__name__, time.monotonic())
                if held is not None:
                    log.error("alert %s not delivered: %s", alert.alert_id, exc, exc_info=exc)

    def restore(self, open_alerts: Sequence[Alert]) -> None:
        """All the alerts open now, read back from the store (at start, after a rebalance):
        the gauge shows exactly these (series of alerts resolved elsewhere meanwhile go), and
        their webhooks, told of the opening already, are not told again. Never raises."""
        try:
            self.gauge.replace(open_alerts)
            for alert in open_alerts:
                self._posted.is_news(alert)
        except Exception as exc:
            log.error("open alerts not restored: %s", exc, exc_info=exc)

    def _one(self, alert: Alert) -> None:
        self.gauge.update(alert)
        url = webhook_for(alert, self.monitoring)
        if url is None or not self._posted.is_news(alert):
            return
        self.webhooks.send(url, json.dumps(slack_message(alert)).encode())

    async def drain(self) -> None:
        """Wait until every queued webhook message is delivered or given up."""
        await self.webhooks.drain()

    async def close(self) -> None:
        await self.webhooks.close()
