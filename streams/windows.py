"""Tumbling-window aggregates per group. Pure: the caller passes the clock in.

A response belongs to the window holding its event time (`ts`, set when inference finished
it), so a replayed response lands in the window it did the first time. A request id counts
once: in one window, and in no other window while the first is still held in memory (a
result produced twice, with two timestamps, is not counted twice).

Life of a window, by the caller's wall clock `now` (epoch seconds):
- open: it takes responses; nothing is emitted before its end plus `grace_s`;
- due: past end + grace with responses not emitted yet (`dirty`): `due()` emits its
  aggregate, which replaces any earlier emission of the same window downstream;
- retained: emitted, kept `retain_s` after its last response, so late responses (or a
  backlog caught up after an outage) re-emit a fuller aggregate instead of a partial one;
- retired: dropped by `retire()`.

A window first seen when it is already past end + grace may have been emitted before (by
this worker before a restart or a rebalance, or by the previous owner of its group), and
what this worker sees of it now is only what was replayed or arrived late. Such a window
`needs_seed()`: the caller loads what is stored for it (`seed()`) before it can be due, so
its new aggregate is the union, never a part that would replace the whole.

Each window also aggregates quality per segment (streams/quality.py): a due window yields
its MetricWindow and its QualityWindows together (`due_windows()`).
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas import MetricWindow, QualityWindow
from schemas.base import MAX_COUNT, MAX_DURATION_MS, MAX_TEXT_LEN, MAX_TOTAL_COST_USD
from streams.features import GroupKey, ResponseFeatures, group_key_text
from streams.quality import QualityRules, WindowQuality

# Stable ids: the same aggregate of the same window always gets the same event_id.
_WINDOW_ID_NAMESPACE = uuid.UUID("7c1c5f3e-4a53-4cf3-9f5c-2b0d7c4e9a11")


@dataclass(frozen=True, slots=True, order=True)
class WindowKey:
    start_ms: int
    group: GroupKey

    @property
    def group_text(self) -> str:
        return group_key_text(self.group)


def window_start_ms(ts: datetime, length_ms: int) -> int:
    """Start (epoch ms) of the tumbling window of `length_ms` that holds `ts`."""
    epoch_ms = math.floor(ts.timestamp() * 1000)
    return epoch_ms - epoch_ms % length_ms


def _count(n: int) -> int:
    """Saturated: sums of in-bound values can pass a window's bound, and a window whose
    contract cannot be built would stop every window; a saturated one only reads high."""
    return min(n, MAX_COUNT)


def _millis(value: float) -> float:
    return min(value, MAX_DURATION_MS)


def from_epoch_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks; 0.0 if empty.

    The same definition as numpy's default ("linear"), so results are easy to check.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    n = len(sorted_values)
    if n == 0:
        return 0.0
    rank = (n - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, n - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True, slots=True)
class DueWindow:
    """What a due window emits: its metrics, and its quality per segment."""

    key: WindowKey
    metric: MetricWindow
    quality: list[QualityWindow]


@dataclass
class _Window:
    key: WindowKey
    quality: WindowQuality = field(default_factory=WindowQuality)
    request_ids: set[str] = field(default_factory=set)
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttfts_ms: list[float] = field(default_factory=list)
    output_chars: int = 0
    ok_count: int = 0
    finish_reasons: Counter[str] = field(default_factory=Counter)
    dirty: bool = False
    seeded: bool = True
    last_added: float = 0.0

    def add(self, features: ResponseFeatures, now: float) -> None:
        self.request_ids.add(features.request_id)
        self.input_tokens += features.input_tokens
        self.output_tokens += features.output_tokens
        self.cost_usd += features.cost_usd
        self.finish_reasons[features.finish_reason] += 1
        self.quality.add(features)
        if features.is_error:
            self.errors += 1
        else:
            # Latency, ttft and length describe answers; failures are counted in `errors`.
            self.ok_count += 1
            self.latencies_ms.append(features.latency_ms)
            self.output_chars += features.output_chars
            if features.output_tokens > 0:
                self.ttfts_ms.append(features.ttft_ms)
        self.dirty = True
        self.last_added = now

    def aggregate(self, length_ms: int) -> MetricWindow:
        latencies = sorted(self.latencies_ms)
        ttfts = sorted(self.ttfts_ms)
        name, version, variant, pool, model = self.key.group
        requests = len(self.request_ids)
        end_ms = self.key.start_ms + length_ms
        ident = f"{self.key.start_ms}|{length_ms}|{self.key.group_text}|{requests}"
        return MetricWindow(
            event_id=uuid.uuid5(_WINDOW_ID_NAMESPACE, ident).hex,
            # The aggregate describes data up to the window's end: a re-emission of the
            # same content is identical, field for field.
            ts=from_epoch_ms(end_ms),
            window_start=from_epoch_ms(self.key.start_ms),
            window_end=from_epoch_ms(end_ms),
            prompt_name=name,
            prompt_version=version,
            variant=variant,
            pool=pool,
            model=model,
            requests=_count(requests),
            errors=_count(self.errors),
            input_tokens=_count(self.input_tokens),
            output_tokens=_count(self.output_tokens),
            # e.g. 1e7 responses of 1e12 USD each: past the column's bound, saturated.
            cost_usd=min(self.cost_usd, MAX_TOTAL_COST_USD),
            # Percentiles and the mean lie within their inputs' bounds but for float
            # rounding at the very top: clamped too.
            latency_p50_ms=_millis(percentile(latencies, 50)),
            latency_p95_ms=_millis(percentile(latencies, 95)),
            latency_p99_ms=_millis(percentile(latencies, 99)),
            ttft_p50_ms=_millis(percentile(ttfts, 50)),
            ttft_p95_ms=_millis(percentile(ttfts, 95)),
            output_chars_mean=(
                min(self.output_chars / self.ok_count, MAX_TEXT_LEN) if self.ok_count else 0.0
            ),
            finish_reasons={k: _count(n) for k, n in sorted(self.finish_reasons.items())},
        )


class WindowAccumulator:
    """Open and retained windows of one worker (the owner of their groups)."""

    def __init__(
        self,
        length_s: float,
        grace_s: float = 0.0,
        retain_s: float = 0.0,
        segment_max_values: int = 32,
        quality_rules: QualityRules | None = None,
    ) -> None:
        if length_s <= 0:
            raise ValueError("window length must be positive")
        if grace_s < 0 or retain_s < 0:
            raise ValueError("grace and retention cannot be negative")
        self.length_ms = max(1, round(length_s * 1000))
        self.grace_ms = round(grace_s * 1000)
        self.retain_s = retain_s
        if segment_max_values < 1:
            raise ValueError("segment_max_values must be at least 1")
        self.segment_max_values = segment_max_values
        self.quality_rules = quality_rules or QualityRules()
        self._windows: dict[WindowKey, _Window] = {}
        # request id -> the window counting it, for every window held
        self._counted_in: dict[str, WindowKey] = {}
        # Due windows whose aggregate could not be built, with why (see `unbuildable()`).
        self._unbuildable: list[tuple[WindowKey, str]] = []

    def __len__(self) -> int:
        return len(self._windows)

    def key_for(self, features: ResponseFeatures) -> WindowKey:
        return WindowKey(window_start_ms(features.ts, self.length_ms), features.group)

    def _closed(self, key: WindowKey, now: float) -> bool:
        return now * 1000 >= key.start_ms + self.length_ms + self.grace_ms

    def _count(self, window: _Window, features: ResponseFeatures, now: float) -> None:
        window.add(features, now)
        self._counted_in[features.request_id] = window.key

    def add(self, features: ResponseFeatures, now: float) -> WindowKey | None:
        """Count a response in its window; None if it is counted already."""
        if features.request_id in self._counted_in:
            return None
        key = self.key_for(features)
        window = self._windows.get(key)
        if window is None:
            quality = WindowQuality(self.segment_max_values, self.quality_rules)
            window = self._windows[key] = _Window(key, quality, seeded=not self._closed(key, now))
        self._count(window, features, now)
        return key

    def needs_seed(self) -> list[WindowKey]:
        """Windows first seen past their end + grace, to complete from storage first."""
        return sorted(key for key, window in self._windows.items() if not window.seeded)

    def seed(self, key: WindowKey, stored: Iterable[ResponseFeatures]) -> int:
        """Count the stored responses of window `key` it has not counted; returns how many."""
        window = self._windows.get(key)
        if window is None:
            return 0
        added = 0
        for features in stored:
            if self.key_for(features) == key and features.request_id not in self._counted_in:
                self._count(window, features, window.last_added)
                added += 1
        window.seeded = True
        return added

    def due(self, now: float) -> list[tuple[WindowKey, MetricWindow]]:
        """Metric aggregates of the windows `due_windows()` emits."""
        return [(due.key, due.metric) for due in self.due_windows(now)]

    def due_windows(self, now: float) -> list[DueWindow]:
        """Aggregates of closed, seeded windows with responses not emitted yet, oldest first."""
        out: list[DueWindow] = []
        for key in sorted(self._windows):
            window = self._windows[key]
            if window.dirty and window.seeded and self._closed(key, now):
                window.dirty = False
                try:
                    metric = window.aggregate(self.length_ms)
                except ValueError as error:  # pydantic's ValidationError is a ValueError
                    # Not emitted, like a window the store refuses; the others still are.
                    self._unbuildable.append((key, str(error)))
                    continue
                try:
                    quality = window.quality.windows(key.start_ms, self.length_ms, key.group)
                except ValueError as error:
                    # The metrics still go out; only the quality rows of this window are lost.
                    self._unbuildable.append((key, f"quality aggregate: {error}"))
                    quality = []
                out.append(DueWindow(key, metric, quality))
        return out

    def unbuildable(self) -> list[tuple[WindowKey, str]]:
        """Due windows `due()` could not build an aggregate of (and why), since the last call.

        Their responses are counted and no longer dirty: the caller acks what they hold so
        the stream moves on past them.
        """
        failed, self._unbuildable = self._unbuildable, []
        return failed

    def _drop(self, key: WindowKey) -> None:
        window = self._windows.pop(key, None)
        if window is not None:
            for request_id in window.request_ids:
                if self._counted_in.get(request_id) == key:
                    del self._counted_in[request_id]

    def retire(self, now: float) -> list[WindowKey]:
        """Forget emitted windows that got no response for `retain_s`."""
        gone = [
            key
            for key, window in self._windows.items()
            if not window.dirty
            and self._closed(key, now)
            and now - window.last_added >= self.retain_s
        ]
        for key in gone:
            self._drop(key)
        return gone

    def discard(self, keys: Iterable[WindowKey]) -> None:
        """Drop windows without emitting them (their partition moved to another worker)."""
        for key in keys:
            self._drop(key)

    def pending(self) -> list[WindowKey]:
        """Windows holding responses not emitted yet."""
        return [key for key, window in self._windows.items() if window.dirty]
