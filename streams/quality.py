"""Quality aggregates of one tumbling window and group, per segment. Pure: no IO, no clock.

What one response contributes is read once (`observe`), then added to the whole group's
aggregate (segment "") and to one aggregate per declared segment attribute it carries
("locale=de"). Per (window, group, segment) a `QualityWindow` holds:
- `responses`, `errors`;
- rates as hits of totals, with their Wilson 95% interval:
  "error" (of all responses); "pii_input" (pii_input > 0, of responses with the signal);
  of the answers (responses without error) that carry the signal: "refusal" (refusal set),
  "pii_output" (pii_output > 0) and "pii_output.<TYPE>" (that entity type found; its total
  is pii_output's), "toxic" (toxicity >= toxic_threshold), "unsupported" (grounding below
  unsupported_below), "safety_flag" (any of those three, of the answers checked for one),
  "json_invalid" (json_valid == 0);
- distributions of the answers (`DISTRIBUTIONS`): a KLL sketch each, its [p50, p90, p95,
  p99], and a bottom-k sample by request-id hash (streams/sketches.py);
- categories "finish_reason" and "error_kind" (of all responses): value -> count;
- the sum of the output embeddings and how many were summed (the centroid is sum / count),
  and a bottom-k sample of the embeddings themselves (`EMBEDDING_SAMPLE_K`, by the same
  request-id hash as the scalar samples, values rounded to float32 as the store keeps them):
  what the monitor's MMD test compares.

Everything merges (`merge_quality`): an hour, a day or all pools of a prompt version are the
sum of their windows, exactly for counts, rates and samples, within KLL's error for quantiles.

Values are kept in plain lists while the window is open (appending is what every response
costs); sketches and samples are built only when the window is aggregated.
"""

from __future__ import annotations

import heapq
import math
import uuid
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from datasketches import kll_floats_sketch

from llmops.monitoring_config import MonitoringSettings
from llmops.stats.proportions import wilson_interval
from schemas import QualityWindow
from schemas.base import MAX_COUNT, MAX_STATISTIC
from schemas.monitoring import MAX_EMBEDDING_DIM, MAX_EMBEDDING_SAMPLE, MAX_SIGNALS
from streams import sketches
from streams.features import GroupKey, ResponseFeatures, group_key_text

# Distributions of the answers: from the features, and from detector signals by that name
# (the cheap tier's toxicity and grounding, the embedding tier's scores).
FEATURE_DISTRIBUTIONS: tuple[str, ...] = ("latency_ms", "ttft_ms", "output_chars", "output_tokens")
SIGNAL_DISTRIBUTIONS: tuple[str, ...] = (
    "toxicity",
    "grounding",
    "relevance",
    "refusal_similarity",
    "semantic_grounding",
)
DISTRIBUTIONS = FEATURE_DISTRIBUTIONS + SIGNAL_DISTRIBUTIONS
CATEGORIES: tuple[str, ...] = ("finish_reason", "error_kind")
RATES: tuple[str, ...] = (
    "refusal",
    "pii_output",
    "pii_input",
    "toxic",
    "unsupported",
    "safety_flag",
    "json_invalid",
    "error",
)
# "pii_output.EMAIL": hits of one entity type, counted of pii_output's total.
PII_TYPE_PREFIX = "pii_output."
_PII_TYPE_PARENT = "pii_output"
# Entity-type rates kept per window (the rate maps hold at most MAX_SIGNALS names).
MAX_PII_TYPES = MAX_SIGNALS - len(RATES)
# The segment of an attribute's values past Settings.segment_max_values in one window.
OTHER = "(other)"
WILSON_CONFIDENCE = 0.95

# Output embeddings kept per window and segment (bottom-k by request-id hash), and at most
# this many numbers in all: 32 of all-MiniLM-L6-v2's 384 (about 250 KB of the record's JSON);
# a wider model gets fewer vectors (1536: 8), so a record stays well within a message.
EMBEDDING_SAMPLE_K = MAX_EMBEDDING_SAMPLE
EMBEDDING_SAMPLE_FLOATS = EMBEDDING_SAMPLE_K * 384


def embedding_sample_k(dimension: int) -> int:
    """Vectors of that dimension a window's embedding sample keeps (at least one)."""
    return max(1, min(EMBEDDING_SAMPLE_K, EMBEDDING_SAMPLE_FLOATS // max(dimension, 1)))


# Stable ids: the same aggregate of the same window and segment gets the same event_id.
_QUALITY_ID_NAMESPACE = uuid.UUID("3f0f6d2a-9a43-4f6e-8a0e-5d7b1c2e4f60")


@dataclass(frozen=True, slots=True)
class QualityRules:
    """When a score counts as a flag (Settings.monitoring)."""

    toxic_threshold: float = 0.5
    unsupported_below: float = 1.0

    @classmethod
    def from_monitoring(cls, monitoring: MonitoringSettings) -> QualityRules:
        return cls(monitoring.toxic_threshold, monitoring.unsupported_below)


# An observation's numbers, one row per response: [is_error, one code per rate (0: not
# counted, 1: counted, 2: counted and hit), one value per distribution (NaN: none)].
_RATE_COLUMN = {name: 1 + i for i, name in enumerate(RATES)}
_VALUE_COLUMN = {name: 1 + len(RATES) + i for i, name in enumerate(DISTRIBUTIONS)}
_ROW_WIDTH = 1 + len(RATES) + len(DISTRIBUTIONS)
_NOT_COUNTED, _COUNTED, _HIT = 0.0, 1.0, 2.0


@dataclass(frozen=True, slots=True)
class Observation:
    """What one response adds to every aggregate it belongs to (read once per response)."""

    sample_hash: int
    row: tuple[float, ...]
    # Entity types found in the output: hits of "pii_output.<TYPE>".
    pii_types: tuple[str, ...]
    finish_reason: str
    error_kind: str
    embedding: np.ndarray | None
    # The embedding as float32 bytes (clamped to the contract's bounds): the sampled value,
    # and the tie-break of equal hashes, so the sample never depends on arrival order.
    embedding_key: bytes | None = None


def observe(features: ResponseFeatures, rules: QualityRules) -> Observation:
    # The contract keeps signals finite; a value that is not (a record built around it)
    # is left out rather than counted.
    signals = {k: v for k, v in features.signals.items() if math.isfinite(v)}
    row = [_NOT_COUNTED] * _ROW_WIDTH
    nan = math.nan
    for name in DISTRIBUTIONS:
        row[_VALUE_COLUMN[name]] = nan
    row[0] = 1.0 if features.is_error else 0.0
    row[_RATE_COLUMN["error"]] = _HIT if features.is_error else _COUNTED
    pii_input = signals.get("pii_input")
    if pii_input is not None:
        row[_RATE_COLUMN["pii_input"]] = _HIT if pii_input > 0 else _COUNTED
    pii_types: tuple[str, ...] = ()
    if not features.is_error:
        # Latency, length and scores describe answers; failures are counted in `errors`.
        row[_VALUE_COLUMN["latency_ms"]] = features.latency_ms
        if features.output_tokens > 0:
            row[_VALUE_COLUMN["ttft_ms"]] = features.ttft_ms
        row[_VALUE_COLUMN["output_chars"]] = float(features.output_chars)
        row[_VALUE_COLUMN["output_tokens"]] = float(features.output_tokens)
        for name in SIGNAL_DISTRIBUTIONS:
            value = signals.get(name)
            if value is not None and math.isfinite(value):
                row[_VALUE_COLUMN[name]] = value
        for name, hit in _answer_rates(signals, rules):
            row[_RATE_COLUMN[name]] = _HIT if hit else _COUNTED
        if signals.get(_PII_TYPE_PARENT, 0.0) > 0:
            pii_types = tuple(
                name[len(PII_TYPE_PREFIX) :]
                for name, value in signals.items()
                if name.startswith(PII_TYPE_PREFIX) and value > 0
            )
    embedding = None
    embedding_key = None
    if features.embedding:
        embedding = np.asarray(features.embedding[:MAX_EMBEDDING_DIM], dtype=np.float64)
        if np.isfinite(embedding).all():
            embedding_key = _embedding_key(embedding)
        else:
            embedding = None
    return Observation(
        sketches.stable_hash(features.request_id),
        tuple(row),
        pii_types,
        features.finish_reason,
        features.error_kind,
        embedding,
        embedding_key,
    )


def _embedding_key(vector: np.ndarray | Sequence[float]) -> bytes:
    clamped = np.clip(np.asarray(vector, dtype=np.float64), -MAX_STATISTIC, MAX_STATISTIC)
    return clamped.astype(np.float32).tobytes()


def embedding_values(key: bytes) -> list[float]:
    return [float(v) for v in np.frombuffer(key, dtype=np.float32)]


_EmbeddingItem = tuple[int, bytes]


class _EmbeddingSample:
    """The bottom-k (hash, float32 bytes) pairs of the embeddings seen, exact and cheap: a
    pair at or past the k-th smallest kept is refused by one comparison; the set is pruned
    back to k when it reaches 2k (a pair seen twice counts once)."""

    __slots__ = ("_bound", "items")

    def __init__(self) -> None:
        self.items: set[_EmbeddingItem] = set()
        self._bound: _EmbeddingItem | None = None

    def add(self, item: _EmbeddingItem) -> None:
        if self._bound is not None and item >= self._bound:
            return  # not among the k smallest (or kept already)
        self.items.add(item)
        if len(self.items) >= 2 * EMBEDDING_SAMPLE_K:
            kept = heapq.nsmallest(EMBEDDING_SAMPLE_K, self.items)
            self.items = set(kept)
            self._bound = kept[-1]

    def smallest(self) -> list[_EmbeddingItem]:
        return heapq.nsmallest(EMBEDDING_SAMPLE_K, self.items)


def _answer_rates(signals: Mapping[str, float], rules: QualityRules) -> list[tuple[str, bool]]:
    rates: list[tuple[str, bool]] = []
    refusal = signals.get("refusal")
    if refusal is not None:
        rates.append(("refusal", refusal >= 0.5))
    pii = signals.get(_PII_TYPE_PARENT)
    if pii is not None:
        rates.append(("pii_output", pii > 0))
    toxicity = signals.get("toxicity")
    if toxicity is not None:
        rates.append(("toxic", toxicity >= rules.toxic_threshold))
    grounding = signals.get("grounding")
    if grounding is not None:
        rates.append(("unsupported", grounding < rules.unsupported_below))
    # Any safety flag at all (PII leak, toxic, unsupported), among answers checked for one:
    # the fairness comparison's "safety_flag" figure, exact rather than a sum of rates.
    flags = [flagged for name, flagged in rates if name in _SAFETY_FLAGS]
    if flags:
        rates.append(("safety_flag", any(flags)))
    json_valid = signals.get("json_valid")
    if json_valid is not None:
        rates.append(("json_invalid", json_valid == 0))
    return rates


_SAFETY_FLAGS = frozenset({"pii_output", "toxic", "unsupported"})


def _count(n: int) -> int:
    return min(n, MAX_COUNT)


def _statistic(value: float) -> float:
    return max(-MAX_STATISTIC, min(MAX_STATISTIC, value))


@dataclass
class _Bucket:
    """The responses of one segment: their rows in the window's table (None: all of them)
    and the running sum of their output embeddings (summed as they come: the vectors are
    too big to keep)."""

    rows: list[int] | None = None
    embedding_sum: np.ndarray | None = None
    embedded: int = 0
    embedding_sample: _EmbeddingSample | None = None

    def embed(self, vector: np.ndarray, item: _EmbeddingItem | None = None) -> None:
        if self.embedding_sum is None:
            self.embedding_sum = vector.copy()
        elif len(vector) == len(self.embedding_sum):
            self.embedding_sum += vector
        else:  # another model's embedding: the first dimension seen is kept
            return
        self.embedded += 1
        if item is not None:
            if self.embedding_sample is None:
                self.embedding_sample = _EmbeddingSample()
            self.embedding_sample.add(item)

    def absorb(self, other: _Bucket) -> None:
        """Count what `other` counted too (a segment folded into "(other)")."""
        if self.rows is not None and other.rows is not None:
            self.rows.extend(other.rows)
        if other.embedding_sum is not None:
            if self.embedding_sum is None:
                self.embedding_sum = other.embedding_sum.copy()
                self.embedded = other.embedded
            elif len(other.embedding_sum) == len(self.embedding_sum):
                self.embedding_sum += other.embedding_sum
                self.embedded += other.embedded
            else:
                return  # another model's embeddings: neither their sum nor their sample
            if other.embedding_sample is not None:
                if self.embedding_sample is None:
                    self.embedding_sample = _EmbeddingSample()
                for item in other.embedding_sample.items:
                    self.embedding_sample.add(item)


class _Table:
    """One window's observations, a row each: built into arrays when the window is due."""

    def __init__(self) -> None:
        # Flat machine arrays: a few bytes per number, not a Python object each.
        self.rows = array("d")
        self.hashes = array("q")
        self.finish_reasons: list[str] = []
        self.error_kinds: list[str] = []
        # Entity type -> the rows whose output had it.
        self.pii_rows: dict[str, list[int]] = {}

    def append(self, obs: Observation) -> int:
        index = len(self.hashes)
        self.rows.extend(obs.row)
        self.hashes.append(obs.sample_hash)
        self.finish_reasons.append(obs.finish_reason)
        self.error_kinds.append(obs.error_kind)
        for kind in obs.pii_types:
            self.pii_rows.setdefault(kind, []).append(index)
        return index

    def arrays(self) -> _Arrays:
        return _Arrays(
            # Copies: a view would pin the arrays' buffers, and they grow with late responses.
            np.frombuffer(self.rows, dtype=np.float64).reshape(-1, _ROW_WIDTH).copy(),
            np.frombuffer(self.hashes, dtype=np.int64).copy(),
            np.asarray(self.finish_reasons, dtype=object),
            np.asarray(self.error_kinds, dtype=object),
            {kind: np.asarray(rows, dtype=np.int64) for kind, rows in self.pii_rows.items()},
        )


@dataclass(frozen=True)
class _Arrays:
    rows: np.ndarray
    hashes: np.ndarray
    finish_reasons: np.ndarray
    error_kinds: np.ndarray
    pii_rows: Mapping[str, np.ndarray]

    def parts(
        self, bucket: _Bucket, start: datetime, end: datetime, group: GroupKey, segment: str
    ) -> _Parts:
        """The counts, sketches and samples of the bucket's rows."""
        if bucket.rows is None:
            selected = np.arange(len(self.rows))
        else:
            selected = np.asarray(bucket.rows, dtype=np.int64)
        table = self.rows[selected]
        totals: dict[str, int] = {}
        hits: dict[str, int] = {}
        for name, column in _RATE_COLUMN.items():
            codes = table[:, column]
            total = int(np.count_nonzero(codes))
            if total:
                totals[name] = total
                hits[name] = int(np.count_nonzero(codes == _HIT))
        pii_type_hits: dict[str, int] = {}
        for kind, rows in self.pii_rows.items():
            n = len(rows) if bucket.rows is None else int(np.isin(rows, selected).sum())
            if n:
                pii_type_hits[kind] = n
        hashes = self.hashes[selected]
        kll: dict[str, kll_floats_sketch] = {}
        samples: dict[str, tuple[list[int], list[float]]] = {}
        for name, column in _VALUE_COLUMN.items():
            values = table[:, column]
            present = ~np.isnan(values)
            if not present.any():
                continue
            kept, kept_hashes = values[present], hashes[present]
            kll[name] = sketches.kll_of(kept)
            samples[name] = sketches.bottom_k_arrays(kept_hashes, kept)
        categories = {
            "finish_reason": Counter(self.finish_reasons[selected].tolist()),
            "error_kind": Counter(k for k in self.error_kinds[selected].tolist() if k),
        }
        return _Parts(
            start=start,
            end=end,
            group=group,
            segment=segment,
            responses=len(selected),
            errors=int(np.count_nonzero(table[:, 0])),
            totals=totals,
            hits=hits,
            pii_type_hits=pii_type_hits,
            sketches=kll,
            samples=samples,
            categories=categories,
            embedding_sum=bucket.embedding_sum,
            embedded=bucket.embedded,
            embedding_sample=(
                bucket.embedding_sample.smallest() if bucket.embedding_sample is not None else []
            ),
        )


def _at(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


@dataclass
class _Parts:
    """Counts, sketches and samples of one window (or a merge of windows), not yet a record."""

    start: datetime
    end: datetime
    group: GroupKey
    segment: str
    responses: int
    errors: int
    totals: Mapping[str, int]
    hits: Mapping[str, int]
    pii_type_hits: Mapping[str, int]
    sketches: Mapping[str, kll_floats_sketch]
    samples: Mapping[str, tuple[list[int], list[float]]]
    categories: Mapping[str, Mapping[str, int]]
    embedding_sum: np.ndarray | None
    embedded: int
    ts: datetime | None = None
    # Bottom-k (hash, float32 bytes) of the output embeddings, ascending.
    embedding_sample: Sequence[_EmbeddingItem] = ()


def _build(parts: _Parts, ident: str) -> QualityWindow:
    totals = {name: _count(n) for name, n in sorted(parts.totals.items())}
    hits = {name: _count(min(parts.hits.get(name, 0), n)) for name, n in sorted(totals.items())}
    parent_total = totals.get(_PII_TYPE_PARENT, 0)
    for kind, n in sorted(parts.pii_type_hits.items())[:MAX_PII_TYPES]:
        name = PII_TYPE_PREFIX + kind
        totals[name] = parent_total
        hits[name] = _count(min(n, parent_total))
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for name, total in totals.items():
        interval = wilson_interval(hits[name], total, WILSON_CONFIDENCE)
        low[name], high[name] = interval.low, interval.high
    quantiles: dict[str, list[float]] = {}
    encoded: dict[str, str] = {}
    for name, sketch in sorted(parts.sketches.items()):
        if sketch.is_empty():
            continue
        quantiles[name] = sketches.quantiles_of(sketch)
        encoded[name] = sketches.encode_sketch(sketch)
    samples = {
        name: parts.samples[name] for name in sorted(parts.samples) if parts.samples[name][0]
    }
    embedding_sum: list[float] = []
    embedding_sample: Sequence[_EmbeddingItem] = ()
    if parts.embedding_sum is not None and parts.embedded:
        embedding_sum = [_statistic(float(v)) for v in parts.embedding_sum]
        embedding_sample = parts.embedding_sample[: embedding_sample_k(len(embedding_sum))]
    name, version, variant, pool, model = parts.group
    return QualityWindow(
        event_id=uuid.uuid5(_QUALITY_ID_NAMESPACE, ident).hex,
        # The aggregate describes data up to the window's end: a re-emission of the same
        # content carries the same ts and id.
        ts=parts.ts or parts.end,
        window_start=parts.start,
        window_end=parts.end,
        prompt_name=name,
        prompt_version=version,
        variant=variant,
        pool=pool,
        model=model,
        segment=parts.segment,
        responses=_count(parts.responses),
        errors=_count(parts.errors),
        rate_totals=totals,
        rate_hits=hits,
        rate_low=low,
        rate_high=high,
        quantiles=quantiles,
        sketches=encoded,
        sample={name: values for name, (_, values) in samples.items()},
        sample_hashes={name: hashes for name, (hashes, _) in samples.items()},
        categories={
            category: {value: _count(n) for value, n in sorted(counts.items())}
            for category, counts in sorted(parts.categories.items())
            if counts
        },
        embedding_sum=embedding_sum,
        embedded=_count(parts.embedded) if embedding_sum else 0,
        embedding_sample=[embedding_values(key) for _, key in embedding_sample],
        embedding_sample_hashes=[h for h, _ in embedding_sample],
    )


class WindowQuality:
    """The quality aggregates of one window and group: the whole group and its segments.

    Each attribute keeps at most `max_values` values as segments of their own; the others
    are counted in "attr=(other)". Which values: those whose hash of "attr=value" is smallest,
    so the choice depends on the set of values seen, not on their order, and a window rebuilt
    after a restart (the same responses, in another order) has the same segments. A value
    that loses its segment to a new one is folded into "(other)"; if its segment was emitted
    already, the next emission carries it empty, so its stored row stops counting.
    """

    def __init__(self, max_values: int = 32, rules: QualityRules | None = None) -> None:
        if max_values < 1:
            raise ValueError("segment_max_values must be at least 1")
        self.max_values = max_values
        self.rules = rules or QualityRules()
        self._table = _Table()
        self._whole = _Bucket()
        self._segments: dict[str, dict[str, _Bucket]] = {}
        self._ranks: dict[str, dict[str, int]] = {}
        self._worst: dict[str, tuple[int, str]] = {}
        self._other: dict[str, _Bucket] = {}
        self._emitted: set[str] = set()

    def __len__(self) -> int:
        return len(self._table.hashes)

    def add(self, features: ResponseFeatures) -> None:
        obs = observe(features, self.rules)
        index = self._table.append(obs)
        buckets = [self._whole]
        for attribute, value in features.segments.items():
            bucket = self._segment(attribute, value)
            assert bucket.rows is not None
            bucket.rows.append(index)
            buckets.append(bucket)
        if obs.embedding is not None:
            item = None if obs.embedding_key is None else (obs.sample_hash, obs.embedding_key)
            for bucket in buckets:
                bucket.embed(obs.embedding, item)

    def _other_of(self, attribute: str) -> _Bucket:
        return self._other.setdefault(attribute, _Bucket(rows=[]))

    def _segment(self, attribute: str, value: str) -> _Bucket:
        admitted = self._segments.setdefault(attribute, {})
        found = admitted.get(value)
        if found is not None:
            return found
        if value == OTHER:
            return self._other_of(attribute)
        rank = sketches.stable_hash(f"{attribute}={value}")
        ranks = self._ranks.setdefault(attribute, {})
        if len(admitted) >= self.max_values:
            worst_rank, worst = self._worst[attribute]
            if rank >= worst_rank:
                return self._other_of(attribute)
            self._other_of(attribute).absorb(admitted.pop(worst))
            del ranks[worst]
        admitted[value] = bucket = _Bucket(rows=[])
        ranks[value] = rank
        if len(admitted) >= self.max_values:
            self._worst[attribute] = max((r, v) for v, r in ranks.items())
        return bucket

    def segments(self) -> list[tuple[str, _Bucket]]:
        """("", the whole group), then "attr=value" by attribute and value, "(other)" last."""
        out = [("", self._whole)]
        for attribute in sorted(self._segments):
            for value in sorted(self._segments[attribute]):
                out.append((f"{attribute}={value}", self._segments[attribute][value]))
            other = self._other.get(attribute)
            if other is not None and other.rows:
                out.append((f"{attribute}={OTHER}", other))
        return out

    def windows(self, start_ms: int, length_ms: int, group: GroupKey) -> list[QualityWindow]:
        """One QualityWindow per segment, plus an empty one per segment emitted before and
        folded into "(other)" since (it replaces that segment's stored row)."""
        arrays = self._table.arrays()
        start, end = _at(start_ms), _at(start_ms + length_ms)
        prefix = f"{start_ms}|{length_ms}|{group_key_text(group)}"
        out: list[QualityWindow] = []
        for segment, bucket in self.segments():
            parts = arrays.parts(bucket, start, end, group, segment)
            out.append(_build(parts, f"{prefix}|{segment}|{parts.responses}"))
        current = {window.segment for window in out}
        for segment in sorted(self._emitted - current):
            parts = _Parts(start, end, group, segment, 0, 0, {}, {}, {}, {}, {}, {}, None, 0)
            out.append(_build(parts, f"{prefix}|{segment}|0"))
        self._emitted |= current
        return out


# --- rollups ---------------------------------------------------------------------------------


def _common_text(values: Iterable[str]) -> str:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else ""


def _common_version(values: Iterable[int]) -> int:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else 0


def merge_quality(windows: Sequence[QualityWindow]) -> QualityWindow:
    """One QualityWindow of several: an hour of windows, all pools of a version, ...

    Counts, rate hits and totals, categories and embedding sums add up (saturated); sketches
    merge; samples (the embedding sample too) are the bottom-k of the union. The span runs
    from the earliest start to the latest end; a group field or the segment the windows do
    not share is left empty ("" or version 0). Windows must not overlap in responses
    (distinct windows, or distinct groups of one window): one segment of a window and its
    whole group would count twice.
    Raises ValueError for no windows, or for embedding sums or samples of different dimensions.
    """
    if not windows:
        raise ValueError("nothing to merge")
    totals: dict[str, int] = {}
    hits: dict[str, int] = {}
    pii_type_hits: dict[str, int] = {}
    categories: dict[str, dict[str, int]] = {}
    for window in windows:
        for name, total in window.rate_totals.items():
            if name.startswith(PII_TYPE_PREFIX):
                kind = name[len(PII_TYPE_PREFIX) :]
                pii_type_hits[kind] = pii_type_hits.get(kind, 0) + window.rate_hits.get(name, 0)
            else:
                totals[name] = totals.get(name, 0) + total
                hits[name] = hits.get(name, 0) + window.rate_hits.get(name, 0)
        for category, counts in window.categories.items():
            merged = categories.setdefault(category, {})
            for value, n in counts.items():
                merged[value] = merged.get(value, 0) + n
    names = sorted({name for window in windows for name in window.sketches})
    merged_sketches = {
        name: sketches.merge_sketches(
            sketches.decode_sketch(w.sketches[name]) for w in windows if name in w.sketches
        )
        for name in names
    }
    samples: dict[str, tuple[list[int], list[float]]] = {}
    for name in sorted({name for window in windows for name in window.sample}):
        hashes: list[int] = []
        values: list[float] = []
        for window in windows:
            hashes.extend(window.sample_hashes.get(name, ()))
            values.extend(window.sample.get(name, ()))
        samples[name] = sketches.bottom_k(hashes, values)
    embedding_sum, embedded = _merged_embeddings(windows)
    embedding_sample = merge_embedding_samples(windows)
    start = min(w.window_start for w in windows)
    end = max(w.window_end for w in windows)
    group = (
        _common_text(w.prompt_name for w in windows),
        _common_version(w.prompt_version for w in windows),
        _common_text(w.variant for w in windows),
        _common_text(w.pool for w in windows),
        _common_text(w.model for w in windows),
    )
    return _build(
        _Parts(
            start=start,
            end=end,
            group=group,
            segment=_common_text(w.segment for w in windows),
            responses=sum(w.responses for w in windows),
            errors=sum(w.errors for w in windows),
            totals=totals,
            hits=hits,
            pii_type_hits=pii_type_hits,
            sketches=merged_sketches,
            samples=samples,
            categories=categories,
            embedding_sum=embedding_sum,
            embedded=embedded,
            ts=max(w.ts for w in windows),
            embedding_sample=embedding_sample,
        ),
        ident="merge|" + "|".join(sorted(w.event_id for w in windows)),
    )


def _merged_embeddings(windows: Sequence[QualityWindow]) -> tuple[np.ndarray | None, int]:
    embedded = [w for w in windows if w.embedded and w.embedding_sum]
    if not embedded:
        return None, 0
    dims = {len(w.embedding_sum) for w in embedded}
    if len(dims) > 1:
        raise ValueError(f"embedding sums of different dimensions: {sorted(dims)}")
    total = np.zeros(dims.pop(), dtype=np.float64)
    for window in embedded:
        total += np.asarray(window.embedding_sum, dtype=np.float64)
    return total, sum(w.embedded for w in embedded)


def merge_embedding_samples(
    windows: Sequence[QualityWindow], k: int = EMBEDDING_SAMPLE_K
) -> list[tuple[int, bytes]]:
    """The bottom-k (hash, float32 bytes) of the windows' embedding samples together, ascending
    (a response in two windows counts once). Raises ValueError for vectors of different
    dimensions (like `_merged_embeddings`)."""
    items: set[tuple[int, bytes]] = set()
    dims: set[int] = set()
    for window in windows:
        for h, vector in zip(window.embedding_sample_hashes, window.embedding_sample, strict=True):
            dims.add(len(vector))
            items.add((h, _embedding_key(vector)))
    if len(dims) > 1:
        raise ValueError(f"embedding samples of different dimensions: {sorted(dims)}")
    return heapq.nsmallest(k, items)
