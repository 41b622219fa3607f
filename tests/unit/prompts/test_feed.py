"""The registry feed: only signed records of a registry contract, keyed as that contract says,
change the prompt set; everything else is a Rejected with the dead letter's kind."""

from __future__ import annotations

from typing import Any

import pytest

from llmops.kafka.deadletter import Rejected
from llmops.kafka.record import Record
from llmops.kafka.signing import SigningKeys
from llmops.prompts.live import RegistryFeed
from llmops.prompts.registry import PromptSet, prompt_set_from_data
from schemas import Event, Experiment, LabelMove, PromptRef, PromptVersion, Variant
from schemas.topics import EXPERIMENTS, PROMPTS
from tests import signing_kit
from tests.signing_kit import signed_headers


def version_of(**data: Any) -> PromptVersion:
    """A version from plain data, as a file or the topic gives it."""
    return PromptVersion.model_validate(data)


VERSION = version_of(name="p", version=1, messages=[{"role": "user", "content": "hi"}])
MOVE = LabelMove(name="p", label="production", version=1, actor="ada")
OTHER_KEYS = SigningKeys("k1", b"another-deployment-key-0123456789")


def _record(
    event: Event,
    key: str,
    *,
    topic: str = PROMPTS.name,
    event_type: str | None = None,
    keys: SigningKeys | None = None,
    value: bytes | None = None,
    signed: bool = True,
) -> Record:
    payload = value if value is not None else event.to_bytes()
    kind = event_type or type(event).__name__
    headers = signed_headers(topic, key.encode(), payload, kind, keys=keys)
    if not signed:
        headers = headers[:-1]
    return Record(topic, 0, 0, key.encode(), payload, headers, 0)


def _feed(prompts: PromptSet | None = None) -> RegistryFeed:
    return RegistryFeed(prompts or PromptSet(), signing_kit.test_keys(), 1_048_576)


def test_signed_versions_moves_and_experiments_apply() -> None:
    feed = _feed()
    feed.apply(_record(VERSION, "p:1"))
    feed.apply(_record(MOVE, "p@production"))
    experiment = Experiment(
        name="e", prompt_name="p", variants=[Variant(name="a", prompt_version=1, weight=1)]
    )
    feed.apply(_record(experiment, "e", topic=EXPERIMENTS.name))
    assert feed.prompts.resolve(PromptRef(name="p")).version == 1
    assert feed.prompts.experiments["e"] == experiment
    assert feed.applied == 3 and feed.rejected == 0


@pytest.mark.parametrize(
    ("record", "kind", "match"),
    [
        (_record(MOVE, "p@production", signed=False), "unsigned", "no llmops-signature"),
        (_record(MOVE, "p@production", keys=OTHER_KEYS), "bad_signature", "does not match"),
        # Signed as a version but carrying a move: the signature names the type.
        (_record(MOVE, "p@production", event_type="PoolStatus"), "schema_invalid", "carries"),
        (_record(MOVE, "p@staging"), "schema_invalid", "keyed 'p@production'"),
        (_record(VERSION, "p:2"), "schema_invalid", "keyed 'p:1'"),
        (_record(MOVE, "p@production", value=b"\xff not json"), "not_json", "."),
        (
            _record(VERSION, "p:1", value=VERSION.to_bytes().replace(b'"hi"', b'"evil"')),
            "schema_invalid",
            "does not match the content",
        ),
        (_record(MOVE, "e", topic=EXPERIMENTS.name), "schema_invalid", "carries"),
        (_record(MOVE, "x", topic="llm.requests"), "unroutable", "not a registry topic"),
    ],
)
def test_bad_records_are_rejected_and_change_nothing(record: Record, kind: str, match: str) -> None:
    feed = _feed()
    with pytest.raises(Rejected, match=match) as caught:
        feed.apply(record)
    assert caught.value.kind == kind
    assert feed.prompts.versions == {} and feed.prompts.moves == {}
    assert feed.rejected == 1


def test_an_oversized_record_is_rejected() -> None:
    big = version_of(name="p", version=1, messages=[{"role": "user", "content": "x" * 5000}])
    feed = RegistryFeed(PromptSet(), signing_kit.test_keys(), 2048)
    with pytest.raises(Rejected) as caught:
        feed.apply(_record(big, "p:1"))
    assert caught.value.kind == "oversized"


def test_signing_off_takes_unsigned_records() -> None:
    feed = RegistryFeed(PromptSet(), None, 1_048_576)
    feed.apply(_record(MOVE, "p@production", signed=False))
    assert feed.prompts.label_version("p", "production") == 1


def test_a_seed_version_keeps_its_labels_when_the_topic_republishes_it() -> None:
    seed = prompt_set_from_data(
        {
            "prompts": [
                {
                    "name": "p",
                    "versions": [
                        {
                            "version": 1,
                            "labels": ["production"],
                            "messages": [{"role": "user", "content": "hi"}],
                        }
                    ],
                }
            ]
        }
    )
    feed = _feed(seed)
    feed.apply(_record(VERSION, "p:1"))
    assert feed.prompts.resolve(PromptRef(name="p")).version == 1


def test_a_version_number_keeps_its_first_content() -> None:
    feed = _feed()
    feed.apply(_record(VERSION, "p:1"))
    feed.apply(_record(VERSION, "p:1"))  # a replay: no-op
    other = version_of(name="p", version=1, messages=[{"role": "user", "content": "other"}])
    with pytest.raises(Rejected, match="exists with other content") as caught:
        feed.apply(_record(other, "p:1"))
    assert caught.value.kind == "schema_invalid"
    assert feed.prompts.versions["p"][1].content_hash == VERSION.content_hash


def test_the_topic_replaces_a_seed_version_once() -> None:
    seed = PromptSet()
    seed.add(version_of(name="p", version=1, messages=[{"role": "user", "content": "seed"}]))
    feed = _feed(seed)
    feed.apply(_record(VERSION, "p:1"))
    assert feed.prompts.versions["p"][1].content_hash == VERSION.content_hash
