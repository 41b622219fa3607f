"""Sticky variant assignment with an allocation that moves as few users as possible. Pure.

A user's sticky key hashes (with the experiment's name as salt) to one of `SLOTS` slots; each
variant owns ranges of slots. A weight change recomputes each variant's quota of slots and
moves only what must move: a shrinking variant gives up the slots at the top of its ranges,
a growing one takes freed slots, lowest first; a variant keeping its quota keeps every slot.
The users that change variant are then exactly those in the moved slots: for 50/50 -> 40/60,
10% of the slots (and of the users), which is the least any reassignment can move, since the
shrinking variant must lose that share of its users.

Experiments without slot ranges (written by hand) split by weight (`pick_weighted`).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence

from schemas import Experiment, PromptRequest
from schemas.experiments import SLOTS, SlotRange

Ranges = list[tuple[int, int]]  # [start, end) pairs


def bucket(salt: str, key: str) -> float:
    """A stable number in [0, 1) for (salt, key): the same user lands on the same variant."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def slot(salt: str, key: str) -> int:
    """The user's slot in [0, SLOTS)."""
    return min(SLOTS - 1, int(bucket(salt, key) * SLOTS))


def pick_weighted(names: Sequence[str], weights: Sequence[float], point: float) -> str:
    """The name whose share of the total weight covers `point` in [0, 1)."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    edge = 0.0
    for name, weight in zip(names, weights, strict=True):
        edge += weight / total
        if point < edge:
            return name
    return names[-1]  # rounding at the top edge


def quotas(weights: Mapping[str, float], total: int = SLOTS) -> dict[str, int]:
    """Slots per variant in proportion to the weights, summing to `total` exactly (largest
    remainders; ties to the earlier name, so the result is deterministic)."""
    weight_sum = sum(weights.values())
    if weight_sum <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError("weights must be >= 0 with a positive sum")
    exact = {name: w / weight_sum * total for name, w in weights.items()}
    given = {name: int(share) for name, share in exact.items()}
    left = total - sum(given.values())
    order = sorted(weights, key=lambda n: (-(exact[n] - given[n]), list(weights).index(n)))
    for name in order[:left]:
        given[name] += 1
    return given


def merged(ranges: Ranges) -> Ranges:
    """Sorted, with adjacent ranges joined (the event stays compact)."""
    out: Ranges = []
    for start, end in sorted(ranges):
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _take_top(ranges: Ranges, count: int) -> tuple[Ranges, Ranges]:
    """Split off the `count` highest slots of `ranges`: (kept, given up)."""
    kept = merged(ranges)
    given: Ranges = []
    while count > 0:
        start, end = kept.pop()
        size = end - start
        if size <= count:
            given.append((start, end))
            count -= size
        else:
            kept.append((start, end - count))
            given.append((end - count, end))
            count = 0
    return kept, given


def _take_low(pool: Ranges, count: int) -> tuple[Ranges, Ranges]:
    """Split off the `count` lowest slots of the free pool: (taken, rest)."""
    rest = merged(pool)
    taken: Ranges = []
    while count > 0:
        start, end = rest.pop(0)
        size = end - start
        if size <= count:
            taken.append((start, end))
            count -= size
        else:
            taken.append((start, start + count))
            rest.insert(0, (start + count, end))
            count = 0
    return taken, rest


def initial_allocation(weights: Mapping[str, float]) -> dict[str, Ranges]:
    """Contiguous ranges in the variants' order."""
    edge = 0
    out: dict[str, Ranges] = {}
    for name, count in quotas(weights).items():
        out[name] = [(edge, edge + count)] if count else []
        edge += count
    return out


def reallocate(current: Mapping[str, Ranges], weights: Mapping[str, float]) -> dict[str, Ranges]:
    """The allocation for the new `weights` that moves the fewest slots from `current`.

    Every variant of `weights` must be in `current` (a new variant starts with no slots:
    pass it with []). Exactly sum(max(0, had - quota)) slots move, from shrinking variants
    to growing ones; nothing moves between variants whose quota did not fall."""
    if set(weights) != set(current):
        raise ValueError("the new weights must name the allocation's variants")
    had = {name: sum(e - s for s, e in ranges) for name, ranges in current.items()}
    if sum(had.values()) != SLOTS:
        raise ValueError(f"the allocation covers {sum(had.values())} slots, not {SLOTS}")
    want = quotas(weights)
    out: dict[str, Ranges] = {}
    pool: Ranges = []
    for name, ranges in current.items():
        kept, given = _take_top(ranges, max(0, had[name] - want[name]))
        out[name] = kept
        pool.extend(given)
    for name in current:
        taken, pool = _take_low(pool, max(0, want[name] - had[name]))
        out[name] = merged(out[name] + taken)
    return out


def allocation_of(experiment: Experiment) -> dict[str, Ranges]:
    return {v.name: [(r.start, r.end) for r in v.slots] for v in experiment.variants}


def slot_ranges(ranges: Ranges) -> list[SlotRange]:
    return [SlotRange(start=s, end=e) for s, e in merged(ranges)]


def moved_slots(before: Mapping[str, Ranges], after: Mapping[str, Ranges]) -> int:
    """How many slots changed owner between two allocations."""
    owner_before = _owners(before)
    owner_after = _owners(after)
    return sum(1 for s in range(SLOTS) if owner_before[s] != owner_after[s])


def _owners(allocation: Mapping[str, Ranges]) -> list[str]:
    owners = [""] * SLOTS
    for name, ranges in allocation.items():
        for start, end in ranges:
            owners[start:end] = [name] * (end - start)
    return owners


def owner(experiment: Experiment, slot_number: int) -> str:
    """The variant owning a slot (the experiment must be allocated)."""
    starts: list[tuple[int, int, str]] = sorted(
        (r.start, r.end, v.name) for v in experiment.variants for r in v.slots
    )
    index = bisect_right([s for s, _, _ in starts], slot_number) - 1
    return starts[index][2]


def sticky_key(experiment: Experiment, request: PromptRequest) -> str:
    """The key that keeps a user (or a session) on one variant: the experiment's kind first,
    then the other id, then the request id (a request alone is its own unit)."""
    if experiment.sticky == "session":
        return request.session_id or request.user_id or request.request_id
    return request.user_id or request.session_id or request.request_id


def assign_variant(experiment: Experiment, key: str) -> tuple[str, int | None]:
    """The variant (and its prompt version) for a sticky key: the same one every time."""
    if experiment.allocated:
        chosen = owner(experiment, slot(experiment.name, key))
    else:
        live = [v for v in experiment.variants if not v.stopped]
        chosen = pick_weighted(
            [v.name for v in live], [v.weight for v in live], bucket(experiment.name, key)
        )
    variant = experiment.variant(chosen)
    return variant.name, variant.prompt_version
