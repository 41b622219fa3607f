"""The router's prompt choice follows the experiment's allocation and its sticky kind."""

from __future__ import annotations

from datetime import UTC, datetime

from llmops.experiments.events import VariantSpec, start, stop_variant, with_weights
from llmops.prompts.registry import PromptSet, prompt_set_from_data
from schemas import Experiment, PromptRef, PromptRequest
from services.router.policy import choose_prompt

NOW = datetime(2026, 12, 2, tzinfo=UTC)
VERSIONS = [
    {"version": v, "labels": ["production"] if v == 1 else [],
     "messages": [{"role": "user", "content": f"v{v} {{{{ name }}}}"}]}
    for v in (1, 2)
]  # fmt: skip


def _prompts(experiment: Experiment) -> PromptSet:
    prompts = prompt_set_from_data({"prompts": [{"name": "greet", "versions": VERSIONS}]})
    prompts.add_experiment(experiment)
    return prompts


def _request(user: str | None, session: str | None) -> PromptRequest:
    return PromptRequest(
        prompt=PromptRef(name="greet", variables={"name": "Ada"}), user_id=user, session_id=session
    )


def test_a_session_experiment_keeps_a_session_on_one_variant_whoever_the_user() -> None:
    variants = [VariantSpec("control", "greet", 1, 50), VariantSpec("new", "greet", 2, 50)]
    experiment = start("greet-ab", "greet", variants, NOW, sticky="session")
    prompts = _prompts(experiment)
    for s in range(50):
        chosen = {choose_prompt(_request(f"u{u}", f"s{s}"), prompts).variant for u in range(10)}
        assert len(chosen) == 1  # by session: the users of one session see one variant
    seen = {choose_prompt(_request(f"u{u}", None), prompts).variant for u in range(200)}
    assert seen == {"control", "new"}


def test_the_router_moves_only_the_users_a_weight_change_must_move() -> None:
    variants = [VariantSpec("control", "greet", 1, 50), VariantSpec("new", "greet", 2, 50)]
    experiment = start("greet-ab", "greet", variants, NOW)
    before = _prompts(experiment)
    after = _prompts(with_weights(experiment, {"control": 40, "new": 60}, NOW, "test"))
    users = [f"user-{i}" for i in range(10_000)]
    moved = [
        (a, b)
        for u in users
        if (a := choose_prompt(_request(u, None), before))
        != (b := choose_prompt(_request(u, None), after))
    ]
    assert {(a.variant, b.variant) for a, b in moved} == {("control", "new")}
    assert 0.08 < len(moved) / len(users) < 0.12
    assert all(b.prompt_version == 2 and b.messages[0].content == "v2 Ada" for _, b in moved)


def test_a_stopped_variant_serves_nobody() -> None:
    variants = [VariantSpec("control", "greet", 1, 50), VariantSpec("new", "greet", 2, 50)]
    stopped = stop_variant(start("greet-ab", "greet", variants, NOW), "new", NOW, "guardrail")
    prompts = _prompts(stopped)
    assert {choose_prompt(_request(f"u{i}", None), prompts).variant for i in range(500)} == {
        "control"
    }
