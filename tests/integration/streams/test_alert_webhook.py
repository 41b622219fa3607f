"""Alert delivery over real HTTP: a local aiohttp server receives the Slack-compatible JSON on
open and on resolve, a failing receiver gets the retry, a hanging one is timed out while other
webhooks go on, redirects are not followed, a full queue drops its oldest; the gauge is served
on the process's /metrics."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from pydantic import HttpUrl

from llmops.config import Settings
from llmops.local.procs import free_port
from llmops.monitoring_config import DriftConfig, FairnessConfig, MonitoringSettings, SafetyRule
from llmops.telemetry.metrics import start_metrics_server
from streams.alerting.notify import AlertNotifier
from streams.alerting.webhook import WebhookPolicy
from tests.unit.streams.alerting.kit import alert

pytestmark = pytest.mark.integration
WAIT_S = 30.0  # a deadline against a hung test, never a measurement


class Receiver:
    """A webhook receiver: /ok answers 200, /flaky 500 then 200, /hang never answers until
    released, /redirect answers 302 to /target."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.arrived = asyncio.Condition()
        self.release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/{name}", self.handle)
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        assert request.content_type == "application/json"
        body = await request.json()
        async with self.arrived:
            self.bodies[name].append(body)
            self.arrived.notify_all()
        if name == "hang":
            await self.release.wait()
        if name == "flaky" and len(self.bodies[name]) == 1:
            return web.Response(status=500)
        if name == "redirect":
            raise web.HTTPFound(f"http://127.0.0.1:{self.port}/target")
        return web.json_response({"ok": True})

    def url(self, name: str) -> HttpUrl:
        return HttpUrl(f"http://127.0.0.1:{self.port}/{name}")

    async def wait_for(self, name: str, count: int) -> list[dict[str, Any]]:
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.bodies[name]) >= count), WAIT_S
            )
        return self.bodies[name]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    runner = web.AppRunner(server.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def settings_with(receiver: Receiver, **hooks: str) -> Settings:
    """refusal -> hooks['refusal'], error -> hooks['error'], drift, fairness likewise."""
    monitoring = MonitoringSettings(
        safety=[
            SafetyRule(rate="refusal", max_rate=0.1, webhook=receiver.url(hooks["refusal"])),
            SafetyRule(rate="error", max_rate=0.1, webhook=receiver.url(hooks.get("error", "ok"))),
            SafetyRule(rate="toxic", max_rate=0.1),
        ],
        drift=DriftConfig(webhook=receiver.url(hooks.get("drift", "ok"))),
        fairness=FairnessConfig(webhook=receiver.url(hooks.get("fairness", "ok"))),
    )
    return Settings(monitoring=monitoring)


def delivered(outcome: str) -> float:
    value = REGISTRY.get_sample_value("llmops_alert_webhook_messages_total", {"outcome": outcome})
    return value or 0.0


FAST = WebhookPolicy(timeout_s=0.5, attempts=2, backoff_s=0.01, backoff_max_s=0.05)


async def test_open_and_resolve_each_post_the_alert(receiver: Receiver) -> None:
    notifier = AlertNotifier(settings_with(receiver, refusal="ok"), policy=FAST)
    try:
        await notifier.notify([alert(alert_id="w1")])
        await notifier.notify([alert(alert_id="w1")])  # re-emitted while open: not news
        await notifier.notify([alert(alert_id="w1", state="resolved")])
        await notifier.notify([alert(alert_id="t1", rule="toxic_rate")])  # no webhook
        await notifier.drain()
    finally:
        await notifier.close()
    opened, resolved = await receiver.wait_for("ok", 2)
    assert len(receiver.bodies["ok"]) == 2
    assert opened["text"].startswith(":red_circle: [OPEN] critical safety/refusal_rate: ")
    assert resolved["text"].startswith(":white_check_mark: [RESOLVED] critical ")
    shown = json.dumps(opened["blocks"])
    for part in ("refusal rate 0.31 above 0.10", "support v3 / pool a", "threshold: 0.10"):
        assert part in shown
    assert "2026-12-02 04:00:00 UTC" in shown


async def test_a_server_error_is_retried(receiver: Receiver) -> None:
    retried = delivered("retried")
    notifier = AlertNotifier(settings_with(receiver, refusal="flaky"), policy=FAST)
    try:
        await notifier.notify([alert(alert_id="w2")])
        await notifier.drain()
    finally:
        await notifier.close()
    first, second = await receiver.wait_for("flaky", 2)
    assert first == second
    assert delivered("retried") == retried + 1


async def test_a_hanging_webhook_is_timed_out_and_holds_up_no_other(receiver: Receiver) -> None:
    failed = delivered("failed")
    notifier = AlertNotifier(settings_with(receiver, refusal="hang", drift="ok"), policy=FAST)
    try:
        await notifier.notify([alert(alert_id="w3")])  # returns with the POST not even sent
        assert receiver.bodies["hang"] == []
        await receiver.wait_for("hang", 1)
        await notifier.notify([alert(alert_id="d3", kind="drift", rule="drift_latency_ms")])
        (drift,) = await receiver.wait_for("ok", 1)
        assert not receiver.release.is_set()  # the hanging receiver still holds its request
        assert drift["text"].startswith(":red_circle: [OPEN] critical drift/drift_latency_ms")
        await asyncio.wait_for(notifier.drain(), WAIT_S)  # both tries timed out
    finally:
        await notifier.close()
    assert len(receiver.bodies["hang"]) == 2
    assert delivered("failed") == failed + 1


async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    rejected = delivered("rejected")
    notifier = AlertNotifier(settings_with(receiver, refusal="redirect"), policy=FAST)
    try:
        await notifier.notify([alert(alert_id="w4")])
        await notifier.drain()
    finally:
        await notifier.close()
    assert len(receiver.bodies["redirect"]) == 1
    assert receiver.bodies["target"] == []
    assert delivered("rejected") == rejected + 1


async def test_a_full_queue_drops_its_oldest(receiver: Receiver) -> None:
    dropped = delivered("dropped")
    policy = WebhookPolicy(queue_size=2, timeout_s=5.0, attempts=1)
    notifier = AlertNotifier(settings_with(receiver, refusal="ok"), policy=policy)
    try:
        # One batch: queued before the sender first runs, so 3 of the 5 find the queue full.
        await notifier.notify([alert(alert_id=f"q{i}", subject=f"s{i}") for i in range(5)])
        await notifier.drain()
    finally:
        await notifier.close()
    bodies = receiver.bodies["ok"]
    assert [body["text"].split(" — ")[0].rsplit(": ", 1)[1] for body in bodies] == ["s3", "s4"]
    assert delivered("dropped") == dropped + 3


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT_S) as answer:
        text: str = answer.read().decode()
    return text


async def test_the_gauge_is_on_metrics_while_open(receiver: Receiver) -> None:
    port = free_port()
    start_metrics_server(port)
    subject = "gauge-test support v9"
    line = (
        f'llmops_alert_open{{kind="fairness",rule="fairness_refusal",severity="warning",'
        f'subject="{subject}"}} 1.0'
    )
    notifier = AlertNotifier(settings_with(receiver, refusal="ok"), policy=FAST)
    try:
        opened = alert(alert_id="g1", kind="fairness", rule="fairness_refusal", severity="warning")
        await notifier.notify([opened.model_copy(update={"subject": subject})])
        assert line in await asyncio.to_thread(scrape, port)
        resolved = opened.model_copy(update={"subject": subject, "state": "resolved"})
        await notifier.notify([resolved])
        assert subject not in await asyncio.to_thread(scrape, port)
        assert "llmops_alert_open_overflow 0.0" in await asyncio.to_thread(scrape, port)
        await notifier.drain()
    finally:
        await notifier.close()
    assert len(receiver.bodies["ok"]) == 2  # fairness webhook: open and resolve
