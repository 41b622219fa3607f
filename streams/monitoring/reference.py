"""What a window is compared with: the reference each prompt chooses. Pure, no IO.

Per (group, segment), from the windows of that same group and segment:
- baseline: the first windows of the prompt version, in window order, until they hold
  `baseline_responses` responses. Fixed once complete; a window inside the baseline is not
  tested against it (it would be compared with itself).
- rolling: the `rolling_windows` windows before the current one.
- pinned: the windows of the prompt and segment that start within [pinned_start, pinned_end),
  whatever their version, variant, pool or model: what the prompt looked like then, so a new
  version is compared with a period known to be good.
A reference merges its windows: rate hits and totals and category counts add up, embedding
sums add up, and the numeric samples are pooled (each window's sample is uniform over its
responses, so the pool weighs windows by their sample size), thinned evenly to a bound. The
embedding samples merge exactly, as the bottom-k by request-id hash of the windows' samples
together (MAX_REFERENCE_EMBEDDINGS): a uniform sample of the reference's embedded responses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from llmops.monitoring_config import ReferenceConfig
from schemas import QualityWindow
from streams import rows
from streams.features import GroupKey, group_key_text
from streams.quality import merge_embedding_samples

# Bounds: windows one reference holds or loads, and values pooled per numeric feature.
MAX_REFERENCE_WINDOWS = 1000
MAX_REFERENCE_VALUES = 20_000
# Output embeddings a reference keeps for the MMD test (its cost grows with the square).
MAX_REFERENCE_EMBEDDINGS = 256

# (group, segment): the subject a reference, a streak or an alert is kept for.
SeriesKey = tuple[GroupKey, str]


def group_of(window: QualityWindow) -> GroupKey:
    return (window.prompt_name, window.prompt_version, window.variant, window.pool, window.model)


def series_of(window: QualityWindow) -> SeriesKey:
    return (group_of(window), window.segment)


@dataclass(frozen=True)
class Reference:
    """The merged windows a current window is compared with."""

    description: str
    windows: int
    responses: int
    sample: Mapping[str, Sequence[float]] = field(default_factory=dict)
    rate_totals: Mapping[str, int] = field(default_factory=dict)
    rate_hits: Mapping[str, int] = field(default_factory=dict)
    categories: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    embedding_sum: Sequence[float] = ()
    embedded: int = 0
    # Bottom-k by request-id hash of the windows' embedding samples (float32 values), one
    # row each (an array: the MMD test reads it as one, every window).
    embedding_sample: Sequence[Sequence[float]] | np.ndarray = ()


def _thin(values: list[float], bound: int) -> list[float]:
    if len(values) <= bound:
        return values
    step = len(values) / bound
    return [values[int(i * step)] for i in range(bound)]


def merge_reference(windows: Sequence[QualityWindow], description: str) -> Reference:
    """Sum counts, pool samples and add embedding sums over `windows`."""
    sample: dict[str, list[float]] = {}
    totals: dict[str, int] = {}
    hits: dict[str, int] = {}
    categories: dict[str, dict[str, int]] = {}
    embedding: list[float] = []
    embedded = 0
    for window in windows:
        for name, values in window.sample.items():
            sample.setdefault(name, []).extend(values)
        for name, count in window.rate_totals.items():
            totals[name] = totals.get(name, 0) + count
        for name, count in window.rate_hits.items():
            hits[name] = hits.get(name, 0) + count
        for name, counts in window.categories.items():
            merged = categories.setdefault(name, {})
            for value, count in counts.items():
                merged[value] = merged.get(value, 0) + count
        if window.embedded and window.embedding_sum:
            if not embedding:
                embedding = [0.0] * len(window.embedding_sum)
            if len(window.embedding_sum) == len(embedding):  # another model's: not comparable
                embedding = [a + b for a, b in zip(embedding, window.embedding_sum, strict=True)]
                embedded += window.embedded
    sampled = [  # the embedding sum's model only: another dimension is not comparable
        w for w in windows if w.embedding_sample and len(w.embedding_sample[0]) == len(embedding)
    ]
    keys = [key for _, key in merge_embedding_samples(sampled, MAX_REFERENCE_EMBEDDINGS)]
    embedding_sample = (
        np.frombuffer(b"".join(keys), dtype=np.float32).reshape(len(keys), -1).astype(np.float64)
        if keys
        else ()
    )
    return Reference(
        description=description,
        windows=len(windows),
        responses=sum(w.responses for w in windows),
        sample={name: _thin(values, MAX_REFERENCE_VALUES) for name, values in sample.items()},
        rate_totals=totals,
        rate_hits=hits,
        categories=categories,
        embedding_sum=embedding,
        embedded=embedded,
        embedding_sample=embedding_sample,
    )


def _key(window: QualityWindow) -> tuple[datetime, str]:
    return (window.window_start, group_key_text(group_of(window)))


class ReferenceSeries:
    """The windows of one (group, segment) that its reference can draw on.

    The agent loads what the store holds once (`load`, the windows before the first one it
    evaluates), then hands over every evaluated window (`passed`). A window seen again (a
    re-emission after a restart) replaces the one with its start.
    """

    def __init__(self, config: ReferenceConfig) -> None:
        self.config = config
        self.loaded = False
        # By start and group: a pinned reference holds the windows of several groups.
        self._windows: dict[tuple[datetime, str], QualityWindow] = {}

    def load(self, windows: Iterable[QualityWindow]) -> None:
        for window in windows:
            self._windows.setdefault(_key(window), window)
        self.loaded = True
        self._prune()

    def passed(self, window: QualityWindow) -> None:
        self._windows[_key(window)] = window
        self._prune()

    def _ordered(self) -> list[QualityWindow]:
        return [self._windows[key] for key in sorted(self._windows)]

    def _baseline(self) -> list[QualityWindow]:
        chosen: list[QualityWindow] = []
        total = 0
        for window in self._ordered():
            if total >= self.config.baseline_responses or len(chosen) >= MAX_REFERENCE_WINDOWS:
                break
            chosen.append(window)
            total += window.responses
        return chosen

    def _prune(self) -> None:
        mode = self.config.mode
        if mode == "baseline":
            keep = self._baseline()  # fixed once complete: later windows are not needed
        elif mode == "rolling":
            keep = self._ordered()[-(self.config.rolling_windows + 1) :]
        else:
            keep = [w for w in self._ordered() if self._pinned(w.window_start)]
            keep = keep[:MAX_REFERENCE_WINDOWS]
        self._windows = {_key(w): w for w in keep}

    def _pinned(self, start: datetime) -> bool:
        low, high = self.config.pinned_start, self.config.pinned_end
        return (low is None or start >= low) and (high is None or start < high)

    def reference(self, current: QualityWindow) -> Reference | None:
        """The reference of `current`; None when there is none (yet)."""
        start = current.window_start
        mode = self.config.mode
        if mode == "baseline":
            baseline = self._baseline()
            total = sum(w.responses for w in baseline)
            if total < self.config.baseline_responses or any(
                w.window_start >= start for w in baseline
            ):
                return None  # the baseline is not complete yet, or the window is part of it
            return merge_reference(baseline, f"baseline:first {total} responses")
        if mode == "rolling":
            before = [w for w in self._ordered() if w.window_start < start]
            chosen = before[-self.config.rolling_windows :]
            if not chosen:
                return None
            return merge_reference(chosen, f"rolling:{len(chosen)} windows")
        pinned = [w for w in self._ordered() if _key(w) != _key(current)]
        if not pinned:
            return None
        low, high = self.config.pinned_start, self.config.pinned_end
        return merge_reference(
            pinned, f"pinned:{low.isoformat() if low else ''}..{high.isoformat() if high else ''}"
        )


def reference_query(
    group: GroupKey, segments: Sequence[str], config: ReferenceConfig, before: datetime
) -> tuple[str, dict[str, Any]]:
    """One bounded query (FINAL) for the stored windows the references of a group's segments
    draw on, windows before `before` (the current one's start); each segment's windows are
    bounded on their own (LIMIT n BY segment)."""
    name, version, variant, pool, model = group
    parameters: dict[str, Any] = {
        "name": name,
        "version": version,
        "variant": variant,
        "pool": pool,
        "model": model,
        "segments": list(segments),
        "before": before,
    }
    where = (
        "prompt_name = {name:String} AND prompt_version = {version:UInt32} "
        "AND variant = {variant:String} AND pool = {pool:String} AND model = {model:String} "
        "AND segment IN {segments:Array(String)}"
    )
    if config.mode == "pinned":  # the prompt's windows of that time, any version or route
        where = "prompt_name = {name:String} AND segment IN {segments:Array(String)}"
    columns = ", ".join(QUALITY_WINDOW_COLUMNS)
    if config.mode == "baseline":
        parameters["responses"] = config.baseline_responses
        sql = (
            f"SELECT {columns} FROM (SELECT *, sum(responses) OVER (PARTITION BY segment "
            "ORDER BY window_start ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier "
            f"FROM quality_windows FINAL WHERE {where} "
            "AND window_start < {before:DateTime64(3)}) "
            "WHERE earlier < {responses:UInt64} "
            f"ORDER BY segment, window_start LIMIT {MAX_REFERENCE_WINDOWS} BY segment"
        )
    elif config.mode == "rolling":
        limit = min(config.rolling_windows, MAX_REFERENCE_WINDOWS)
        sql = (
            f"SELECT {columns} FROM quality_windows FINAL WHERE {where} "
            "AND window_start < {before:DateTime64(3)} "
            f"ORDER BY segment, window_start DESC LIMIT {limit} BY segment"
        )
    else:
        parameters["low"] = config.pinned_start or datetime(1970, 1, 1, tzinfo=UTC)
        parameters["high"] = config.pinned_end or before
        sql = (
            f"SELECT {columns} FROM quality_windows FINAL WHERE {where} "
            "AND window_start >= {low:DateTime64(3)} AND window_start < {high:DateTime64(3)} "
            f"ORDER BY segment, window_start LIMIT {MAX_REFERENCE_WINDOWS} BY segment"
        )
    return sql, parameters


# What a reference needs of a stored window: all but the sketches and the sample hashes.
QUALITY_WINDOW_COLUMNS: tuple[str, ...] = tuple(
    c for c in rows.QUALITY_WINDOW_COLUMNS if c not in ("sketches", "sample_hashes")
)


def window_from_row(row: Mapping[str, Any]) -> QualityWindow:
    """A stored quality_windows row as the window (sketches are not read: drift uses samples).
    Raises ValueError for a row outside the contract's bounds."""
    return QualityWindow.model_validate({c: row[c] for c in QUALITY_WINDOW_COLUMNS if c in row})
