"""Publishing to the registry: new versions and label moves on llm.prompts, signed.

`plan_push` is pure: given what the topic holds now (a PromptSet read to its end), a file's
drafts become new versions only where their content hash is new for that prompt (an unchanged
push creates nothing), numbered max + 1; their labels become label moves only where the label
points elsewhere. `publish` sends the events (versions before the moves that name them: one
partition keeps that order) and waits for the broker's acknowledgements.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmops.config import Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.prompts.content import Draft, read_prompt_files
from llmops.prompts.gate import decide_move
from llmops.prompts.live import read_registry
from llmops.prompts.registry import PromptSet
from schemas import LabelMove, PromptVersion
from schemas.prompts import MAX_ACTOR_LEN, MAX_SOURCE_LEN, label_key, version_key
from schemas.topics import PROMPTS

ACTOR_ENV = "LLMOPS_ACTOR"


def current_actor() -> str:
    """Who is publishing: LLMOPS_ACTOR (a CI job names itself), else the OS user."""
    named = os.environ.get(ACTOR_ENV, "").strip()
    if named:
        return named[:128]
    try:
        return getpass.getuser()[:128]
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


@dataclass(frozen=True)
class WantedLabel:
    """A label a file asks for: moved to the version its draft's content is (or becomes)."""

    name: str
    label: str
    version: int
    source: str


@dataclass
class PushPlan:
    new_versions: list[PromptVersion] = field(default_factory=list)
    # Drafts whose content a version already has: (draft, that version).
    unchanged: list[tuple[Draft, int]] = field(default_factory=list)
    labels: list[WantedLabel] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.new_versions or self.labels)


def plan_push(
    drafts: Sequence[Draft], current: PromptSet, *, seed: bool = False, actor: str = ""
) -> PushPlan:
    """New versions (published by `actor`) and wanted labels. `seed`: only labels the prompt
    does not have yet are wanted (a restart's seed push must never move production back)."""
    plan = PushPlan()
    planned = PromptSet(
        versions={name: dict(known) for name, known in current.versions.items()},
        moves={name: dict(moves) for name, moves in current.moves.items()},
    )
    wanted: dict[tuple[str, str], WantedLabel] = {}
    for draft in drafts:
        existing = planned.with_hash(draft.name, draft.content_hash)
        if existing is not None:
            number = existing.version
            plan.unchanged.append((draft, number))
        else:
            latest = planned.latest(draft.name)
            number = latest.version + 1 if latest is not None else 1
            update = {
                "version": number,
                "labels": [],
                "actor": actor[:MAX_ACTOR_LEN],
                "source": draft.source[-MAX_SOURCE_LEN:],
            }
            version = draft.version.model_copy(update=update)
            planned.add(version)
            plan.new_versions.append(version)
        for label in draft.labels:  # a later draft's claim on a label wins, as in the seed
            wanted[(draft.name, label)] = WantedLabel(draft.name, label, number, draft.source)
    for (name, label), want in wanted.items():
        pointed = current.label_version(name, label)
        if pointed == want.version or (seed and pointed is not None):
            continue
        plan.labels.append(want)
    return plan


def with_planned(current: PromptSet, plan: PushPlan) -> PromptSet:
    """The registry as it will be once the plan's versions are published (for the gate)."""
    after = PromptSet(
        versions={name: dict(known) for name, known in current.versions.items()},
        experiments=dict(current.experiments),
        moves={name: dict(moves) for name, moves in current.moves.items()},
        history={name: dict(h) for name, h in current.history.items()},
    )
    for version in plan.new_versions:
        after.add(version)
    return after


async def publish(
    producer: Producer, versions: Sequence[PromptVersion], moves: Sequence[LabelMove]
) -> None:
    """Send versions, then moves, signed (the producer's key), and wait for every ack."""
    acks = []
    for version in versions:
        key = version_key(version.name, version.version)
        acks.append(await producer.send_event(PROMPTS.name, version, key=key, sign=True))
    for move in moves:
        key = label_key(move.name, move.label)
        acks.append(await producer.send_event(PROMPTS.name, move, key=key, sign=True))
    await asyncio.gather(*acks)


async def publish_with_settings(
    settings: Settings, versions: Sequence[PromptVersion], moves: Sequence[LabelMove]
) -> None:
    """`publish` over a producer of its own, signing with the deployment key."""
    if not versions and not moves:
        return
    bus = BusConfig.from_settings(settings, client_id="llmops-prompts")
    async with Producer(bus) as producer:
        await publish(producer, versions, moves)


class PushConflict(RuntimeError):
    """Another push took a version number this one published (both counted max + 1)."""


async def publish_verified(
    settings: Settings,
    versions: Sequence[PromptVersion],
    moves: Sequence[LabelMove],
    timeout_s: float = 10.0,
) -> None:
    """Versions first; then, read back, each must be ours (the first record of a number wins
    in every reader: llmops/prompts/live.py), and only then the label moves, so a lost race
    never moves a label to someone else's content. Raises PushConflict."""
    await publish_with_settings(settings, versions, [])
    if versions:
        after = await read_registry(settings, timeout_s)
        lost = [
            f"{v.name} v{v.version}"
            for v in versions
            if (taken := after.versions.get(v.name, {}).get(v.version)) is None
            or taken.content_hash != v.content_hash
        ]
        if lost:
            raise PushConflict(
                f"a concurrent push took {', '.join(lost)}; no label was moved: push again"
            )
    await publish_with_settings(settings, [], moves)


SEED_ACTOR = "llmops up"
SEED_REASON = "seed"


async def push_seed(
    settings: Settings, path: Path, timeout_s: float = 10.0
) -> tuple[PushPlan, list[LabelMove]]:
    """The seed file into the registry, as `llmops up` does at every start: new content
    becomes versions; labels are set only where the prompt has none of that name yet (a
    restart never moves production back), protected ones forced with the reason "seed"."""
    drafts = read_prompt_files([path]).drafts
    current = await read_registry(settings, timeout_s)
    plan = plan_push(drafts, current, seed=True, actor=SEED_ACTOR)
    after = with_planned(current, plan)
    moves = []
    for want in plan.labels:
        move = decide_move(
            after,
            want.name,
            want.version,
            want.label,
            protected=settings.protected_labels,
            evidence=None,
            actor=SEED_ACTOR,
            force=True,
            reason=SEED_REASON,
        )
        if move is not None:
            moves.append(move)
    await publish_verified(settings, plan.new_versions, moves, timeout_s)
    return plan, moves
