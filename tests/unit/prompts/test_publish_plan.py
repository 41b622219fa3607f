"""Push planning: content decides (an unchanged push creates nothing), new content is max + 1,
files' labels become moves only where the label points elsewhere; the seed never moves a
label that exists."""

from __future__ import annotations

from llmops.prompts.content import drafts_from_text
from llmops.prompts.publish import PushPlan, plan_push, with_planned
from llmops.prompts.registry import PromptSet
from schemas import LabelMove

V1 = "name: p\nlabels: [staging]\nmessages: [{role: user, content: 'one {{ a }}'}]\n"
V2 = "name: p\nlabels: [staging]\nmessages: [{role: user, content: 'two {{ a }}'}]\n"


def _apply(prompts: PromptSet, plan: PushPlan) -> PromptSet:
    """The registry after publishing the plan (labels moved as wanted)."""
    after = with_planned(prompts, plan)
    for want in plan.labels:
        after.move_label(LabelMove(name=want.name, label=want.label, version=want.version))
    return after


def test_a_first_push_creates_version_1_and_its_labels() -> None:
    plan = plan_push(drafts_from_text(V1, "f"), PromptSet())
    assert [(v.name, v.version, v.labels) for v in plan.new_versions] == [("p", 1, [])]
    assert [(w.label, w.version) for w in plan.labels] == [("staging", 1)]
    assert plan.changes


def test_an_unchanged_push_creates_nothing() -> None:
    registry = _apply(PromptSet(), plan_push(drafts_from_text(V1, "f"), PromptSet()))
    again = plan_push(drafts_from_text(V1, "f"), registry)
    assert again.new_versions == [] and again.labels == [] and not again.changes
    assert [(d.name, n) for d, n in again.unchanged] == [("p", 1)]


def test_changed_content_is_max_plus_one_and_back_to_old_content_reuses_it() -> None:
    registry = _apply(PromptSet(), plan_push(drafts_from_text(V1, "f"), PromptSet()))
    plan = plan_push(drafts_from_text(V2, "f"), registry)
    assert [v.version for v in plan.new_versions] == [2]
    assert [(w.label, w.version) for w in plan.labels] == [("staging", 2)]
    registry = _apply(registry, plan)
    back = plan_push(drafts_from_text(V1, "f"), registry)
    assert back.new_versions == []
    assert [(w.label, w.version) for w in back.labels] == [("staging", 1)]


def test_the_same_content_twice_in_one_push_is_one_version() -> None:
    plan = plan_push(drafts_from_text(V1, "a") + drafts_from_text(V1, "b"), PromptSet())
    assert len(plan.new_versions) == 1 and len(plan.unchanged) == 1


SEED = """
prompts:
  - name: s
    versions:
      - {version: 1, labels: [production], messages: [{role: user, content: one}]}
      - {version: 2, labels: [candidate], messages: [{role: user, content: two}]}
"""


def test_the_seed_sets_labels_only_where_none_exist() -> None:
    drafts = drafts_from_text(SEED, "seed")
    first = plan_push(drafts, PromptSet(), seed=True)
    assert [v.version for v in first.new_versions] == [1, 2]
    assert sorted((w.label, w.version) for w in first.labels) == [
        ("candidate", 2),
        ("production", 1),
    ]
    registry = _apply(PromptSet(), first)
    # Someone moved production to v2 since: a restart's seed push leaves it there.
    registry.move_label(LabelMove(name="s", label="production", version=2, previous=1))
    again = plan_push(drafts, registry, seed=True)
    assert again.new_versions == [] and again.labels == []
    # An ordinary push of the same file would move it back (and meet the gate).
    assert [(w.label, w.version) for w in plan_push(drafts, registry).labels] == [("production", 1)]
