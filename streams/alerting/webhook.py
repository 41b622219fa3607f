"""POST alert messages to webhooks without ever holding up the caller.

One bounded queue and one sender task per webhook URL, so a slow or dead receiver delays only
its own messages, in order. `send` only enqueues: a full queue drops its oldest message
(counted), never blocks. Each message is tried `attempts` times: a connection error, a
timeout, 429 or 5xx is retried after a jittered exponential backoff; 2xx is delivered; any
other answer (a 4xx, a redirect: never followed, a URL from configuration must not be
bounced elsewhere) is final. Every outcome is counted in
`llmops_alert_webhook_messages_total{outcome}`.

Webhook URLs carry secrets (Slack's path is the credential): logs name the host only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import Counter

from llmops.telemetry.metrics import NAMESPACE
from llmops.telemetry.ratelog import RateLimiter

log = logging.getLogger(__name__)

WEBHOOK_MESSAGES = Counter(
    "alert_webhook_messages",
    "Alert webhook messages by outcome: delivered, retried (one failed try that is tried "
    "again), failed (every try failed), rejected (a final non-2xx answer), dropped (queue full)",
    ["outcome"],
    namespace=NAMESPACE,
)
LOG_INTERVAL_S = 60.0
MAX_URLS = 256  # distinct webhooks; rules are configuration, this only bounds a mistake


@dataclass(frozen=True)
class WebhookPolicy:
    """How hard a message is pushed; every knob bounded."""

    queue_size: int = 1000  # messages waiting per webhook
    timeout_s: float = 5.0  # one try, connect to last byte
    attempts: int = 4  # tries per message
    backoff_s: float = 1.0  # first retry after about this long, doubling
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        checks = (
            ("queue_size", 1 <= self.queue_size <= 100_000),
            ("timeout_s", 0.0 < self.timeout_s <= 300.0),
            ("attempts", 1 <= self.attempts <= 20),
            ("backoff_s", 0.0 <= self.backoff_s <= 600.0),
            ("backoff_max_s", self.backoff_s <= self.backoff_max_s <= 3600.0),
        )
        for name, ok in checks:
            if not ok:
                raise ValueError(f"webhook {name} out of bounds: {getattr(self, name)}")

    def delay(self, failed_tries: int, jitter: float) -> float:
        """Wait before the next try, after `failed_tries` failures; jitter in [0, 1)."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2.0 ** (failed_tries - 1))
        return ceiling * (0.5 + jitter / 2)


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "?"


class WebhookQueue:
    """One webhook's messages, sent in order by one task."""

    def __init__(self, url: str, policy: WebhookPolicy, limiter: RateLimiter) -> None:
        self.url = url
        self.host = host_of(url)
        self._policy = policy
        self._limiter = limiter
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(policy.queue_size)
        self._task: asyncio.Task[None] | None = None

    def put(self, body: bytes) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            WEBHOOK_MESSAGES.labels("dropped").inc()
            self._warn("dropped", "queue full: oldest message dropped")
        self._queue.put_nowait(body)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def join(self) -> None:
        await self._queue.join()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            body = await self._queue.get()
            try:
                await self._deliver(body)
            except Exception as exc:  # a bug must not end the sender: the next message goes
                WEBHOOK_MESSAGES.labels("failed").inc()
                self._warn("bug", f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    async def _deliver(self, body: bytes) -> None:
        # A session per message: alerts are rare, and nothing outlives the delivery (no
        # connection to close at shutdown). No cookies kept, no proxy or netrc from the
        # environment: only the configured URL decides where the message goes.
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
        ) as session:
            await self._tries(session, body)

    async def _tries(self, session: aiohttp.ClientSession, body: bytes) -> None:
        for attempt in range(1, self._policy.attempts + 1):
            outcome = await self._try(session, body)
            if outcome is None:
                WEBHOOK_MESSAGES.labels("delivered").inc()
                return
            final, reason = outcome
            if final:
                WEBHOOK_MESSAGES.labels("rejected").inc()
                self._warn("rejected", reason)
                return
            if attempt == self._policy.attempts:
                break
            WEBHOOK_MESSAGES.labels("retried").inc()
            await asyncio.sleep(self._policy.delay(attempt, random.random()))
        WEBHOOK_MESSAGES.labels("failed").inc()
        self._warn("failed", f"{reason} after {self._policy.attempts} tries")

    async def _try(self, session: aiohttp.ClientSession, body: bytes) -> tuple[bool, str] | None:
        """None when delivered; else (final, reason)."""
        try:
            async with session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._policy.timeout_s),
            ) as response:
                status = response.status
        except TimeoutError:
            return False, f"no answer within {self._policy.timeout_s:g}s"
        except (aiohttp.ClientError, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return None
        return not retryable(status), f"HTTP {status}"

    def _warn(self, kind: str, reason: str) -> None:
        held = self._limiter.admit(f"{self.host}:{kind}", time.monotonic())
        if held is not None:
            more = f" (+{held} more since the last line)" if held else ""
            log.warning("alert webhook at %s: %s%s", self.host, reason, more)


class Webhooks:
    """The queues of every webhook URL in use, created on first use."""

    def __init__(self, policy: WebhookPolicy | None = None) -> None:
        self.policy = policy or WebhookPolicy()
        self._queues: dict[str, WebhookQueue] = {}
        self._limiter = RateLimiter(LOG_INTERVAL_S)

    def send(self, url: str, body: bytes) -> None:
        """Queue `body` for `url` (needs a running loop); never blocks, never raises."""
        queue = self._queues.get(url)
        if queue is None:
            if len(self._queues) >= MAX_URLS:
                WEBHOOK_MESSAGES.labels("dropped").inc()
                return
            queue = self._queues[url] = WebhookQueue(url, self.policy, self._limiter)
        queue.put(body)

    async def drain(self) -> None:
        """Wait until every queued message is delivered or given up (tests, shutdown)."""
        for queue in list(self._queues.values()):
            await queue.join()

    async def close(self) -> None:
        """Stop the senders; what is still queued is dropped."""
        for queue in self._queues.values():
            await queue.close()
        self._queues.clear()
