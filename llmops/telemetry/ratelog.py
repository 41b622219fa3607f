"""Log rejected input at a bounded rate: one line per kind per interval, never one per record.

A producer gone wrong (or a hostile one) can send thousands of bad records a second; a line
(let alone a traceback) for each would bury everything else in the logs and cost more than
dead-lettering them. Every rejection still goes to the dead-letter topic with its reason: the
log only says that it happens, how often, and one example of each kind.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

# One line per kind at most this often (the suppressed ones are counted into the next line).
REJECTION_LOG_INTERVAL_S = 10.0
# Distinct kinds remembered; kinds are few (dead-letter kinds, exception types), this only
# bounds memory should a caller ever key by something unbounded.
MAX_KINDS = 256
# How much of a reason a log line shows (the dead letter keeps it whole).
MAX_LOGGED_REASON = 300


class RateLimiter:
    """Pure: admits one event per key per `interval_s`, counting the ones held back."""

    def __init__(self, interval_s: float, max_keys: int = MAX_KINDS) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def admit(self, key: str, now: float) -> int | None:
        """None to stay quiet; else how many events of `key` were held back since the last."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] += 1
            return None
        if last is None and len(self._last) >= self.max_keys:
            # Forget the key quiet for longest: its next event is simply admitted again.
            oldest = min(self._last, key=self._last.__getitem__)
            del self._last[oldest]
            self._held.pop(oldest, None)
        self._last[key] = now
        return self._held.pop(key, 0)


class RejectionLog:
    """The log lines of one consumer's rejected records, one per kind per interval."""

    def __init__(
        self,
        logger: logging.Logger,
        service: str,
        interval_s: float = REJECTION_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._service = service
        self._limiter = RateLimiter(interval_s)
        self._clock = clock

    def failed(self, kind: str, reason: str, where: str, bug: BaseException | None) -> bool:
        """A record rejected as `kind`; with `bug` (a handler's unexpected exception) the kind
        names its type and the line is an error with its traceback."""
        if bug is None:
            return self.rejected(kind, reason, where)
        kind = f"{kind}:{type(bug).__name__}"
        return self.rejected(kind, reason, where, error=bug, level=logging.ERROR)

    def rejected(
        self,
        kind: str,
        reason: str,
        where: str,
        *,
        error: BaseException | None = None,
        level: int = logging.WARNING,
    ) -> bool:
        """Log one rejection unless its kind was logged within the interval; True if logged.

        `error` (a handler's unexpected exception) adds its traceback to the admitted line
        only, so a bug still shows its stack once per interval.
        """
        held = self._limiter.admit(kind, self._clock())
        if held is None:
            return False
        more = f" (+{held} more {kind} since the last line)" if held else ""
        self._logger.log(
            level,
            "%s rejected %s as %s: %s%s",
            self._service,
            where,
            kind,
            reason[:MAX_LOGGED_REASON],
            more,
            exc_info=error,
        )
        return True
