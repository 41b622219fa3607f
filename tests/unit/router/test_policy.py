from collections import Counter
from datetime import UTC, datetime

import pytest

from llmops.config import TransformersPool
from llmops.prompts.registry import PromptSet, prompt_set_from_data
from schemas import ChatMessage, PromptRef, PromptRequest
from schemas.requests import EVAL_APP
from services.router.choice import RoutingError
from services.router.policy import choose_pool, choose_prompt, route

NOW = datetime(2026, 1, 1, tzinfo=UTC)

PROMPTS = {
    "prompts": [
        {
            "name": "greet",
            "versions": [
                {
                    "version": 1,
                    "labels": ["production"],
                    "messages": [{"role": "user", "content": "Hello {{ name }}"}],
                },
                {
                    "version": 2,
                    "labels": ["candidate"],
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hi {{ name }}!"},
                    ],
                },
                {
                    "version": 3,
                    "labels": ["production"],
                    "model": "big",
                    "messages": [{"role": "user", "content": "Hey {{ name }}"}],
                },
            ],
        },
        {
            "name": "plain",
            "versions": [
                {
                    "version": 1,
                    "labels": ["production"],
                    "messages": [{"role": "user", "content": "x"}],
                }
            ],
        },
    ],
    "experiments": [
        {
            "name": "greet-ab",
            "prompt_name": "greet",
            "variants": [
                {"name": "control", "prompt_version": 1, "weight": 1},
                {"name": "treatment", "prompt_version": 2, "weight": 1},
            ],
        },
    ],
}


@pytest.fixture
def prompts() -> PromptSet:
    return prompt_set_from_data(PROMPTS)


def _req(**kw: object) -> PromptRequest:
    if "prompt" not in kw and "messages" not in kw:
        kw["messages"] = [ChatMessage(role="user", content="hi")]
    return PromptRequest.model_validate(kw)


def test_raw_messages_pass_through(prompts: PromptSet) -> None:
    choice = choose_prompt(_req(), prompts)
    assert choice.prompt_name is None and choice.variant == "default"
    assert choice.messages[0].content == "hi"


def test_experiment_splits_by_weight_and_sticks_to_the_user(prompts: PromptSet) -> None:
    seen = Counter()
    for i in range(2000):
        req = _req(prompt=PromptRef(name="greet", variables={"name": "Ada"}), user_id=f"u{i}")
        choice = choose_prompt(req, prompts)
        seen[choice.variant] += 1
        assert choice.experiment == "greet-ab"
        assert choice.prompt_version == (1 if choice.variant == "control" else 2)
    assert 0.45 < seen["control"] / 2000 < 0.55
    same = {
        choose_prompt(
            _req(prompt=PromptRef(name="greet", variables={"name": "A"}), user_id="u7"), prompts
        ).variant
        for _ in range(20)
    }
    assert len(same) == 1


def test_pinned_version_and_label_bypass_the_experiment(prompts: PromptSet) -> None:
    pinned = choose_prompt(
        _req(prompt=PromptRef(name="greet", version=2, variables={"name": "A"})), prompts
    )
    assert (pinned.prompt_version, pinned.variant, pinned.experiment) == (2, "v2", None)
    labelled = choose_prompt(
        _req(prompt=PromptRef(name="greet", label="production", variables={"name": "A"})), prompts
    )
    assert labelled.prompt_version == 3  # highest version with the label
    assert labelled.model == "big"


def test_suite_traffic_gets_variants_of_its_own(prompts: PromptSet) -> None:
    def variant(app: str, version: int | None = None, label: str | None = None) -> str:
        ref = PromptRef(name="greet", version=version, label=label, variables={"name": "A"})
        return choose_prompt(_req(prompt=ref, app=app), prompts).variant

    assert variant(EVAL_APP, version=2) == "eval:v2"
    assert variant(EVAL_APP, label="production") == "eval:production"
    assert variant(EVAL_APP).startswith("eval:") and variant("shop").startswith("eval:") is False
    judge = _req(messages=[ChatMessage(role="user", content="grade")], app=EVAL_APP)
    assert choose_prompt(judge, prompts).variant == "eval:default"
    assert variant("shop", version=2) == "v2"
    assert variant("shop", label="production") == "production"


POOLS = [
    TransformersPool(name="pricey", model="m", cost_per_1k_tokens=3.0),
    TransformersPool(name="cheap", model="m", cost_per_1k_tokens=0.5),
    TransformersPool(name="cheap-hi", model="m", cost_per_1k_tokens=0.5, priority=5),
    TransformersPool(name="other", model="big", cost_per_1k_tokens=0.1, adapters=["sql"]),
]


def test_cheapest_pool_for_the_model_wins_ties_by_priority() -> None:
    pool, reason = choose_pool(POOLS, "m", None)
    assert pool.name == "cheap-hi"
    assert reason.startswith("cheapest_healthy")


def test_any_model_takes_the_cheapest_overall_and_adapters_filter() -> None:
    assert choose_pool(POOLS, None, None)[0].name == "other"
    pool, reason = choose_pool(POOLS, None, "sql")
    assert pool.name == "other" and reason.startswith("only_pool")


def test_no_pool_is_a_routing_error() -> None:
    with pytest.raises(RoutingError, match="no configured pool serves model 'x'"):
        choose_pool(POOLS, "x", None)
    with pytest.raises(RoutingError, match="adapter 'nope'"):
        choose_pool(POOLS, "m", "nope")


def test_route_builds_the_routed_request(prompts: PromptSet) -> None:
    req = _req(prompt=PromptRef(name="plain"), model="m")
    routed = route(req, prompts, POOLS, NOW)
    assert routed.pool == "cheap-hi" and routed.model == "m"
    assert routed.prompt_name == "plain" and routed.prompt_version == 1
    assert routed.request == req and routed.routed_at == NOW
    assert routed.route_reason
