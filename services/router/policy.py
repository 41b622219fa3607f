"""Routing decisions, pure: which prompt version and variant, which pool, and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from llmops.config import PoolConfig
from llmops.experiments.assignment import assign_variant, sticky_key
from llmops.prompts.registry import PromptSet, render
from schemas import ChatMessage, PromptRequest, RoutedRequest
from schemas.base import MAX_ROUTE_REASON
from schemas.requests import EVAL_APP, EVAL_VARIANT_PREFIX
from services.router.board import PoolBoard
from services.router.choice import RoutingError, cost_rank

DEFAULT_VARIANT = "default"


@dataclass(frozen=True)
class PromptChoice:
    messages: list[ChatMessage]
    prompt_name: str | None = None
    prompt_version: int | None = None
    experiment: str | None = None
    variant: str = DEFAULT_VARIANT
    model: str | None = None


def choose_prompt(request: PromptRequest, prompts: PromptSet) -> PromptChoice:
    """Raw messages pass through; a prompt reference resolves to a version (maybe by A/B test).
    A suite's requests (and its judge's) get variants of their own: their answers form quality
    windows apart from the app traffic of the version under test."""
    choice = _choose_prompt(request, prompts)
    if request.app == EVAL_APP:
        return replace(choice, variant=f"{EVAL_VARIANT_PREFIX}{choice.variant}")
    return choice


def _choose_prompt(request: PromptRequest, prompts: PromptSet) -> PromptChoice:
    if request.messages is not None:
        return PromptChoice(messages=list(request.messages))
    ref = request.prompt
    assert ref is not None  # the contract guarantees one of the two
    experiment = None if (ref.version or ref.label) else prompts.running_experiment(ref.name)
    if experiment is not None:
        # Sticky to the experiment's kind of key (user or session), by its slot allocation.
        variant, version_number = assign_variant(experiment, sticky_key(experiment, request))
        version = prompts.resolve(ref, version_number)
    else:
        variant = f"v{ref.version}" if ref.version else (ref.label or DEFAULT_VARIANT)
        version = prompts.resolve(ref)
    return PromptChoice(
        messages=render(version, ref.variables),
        prompt_name=version.name,
        prompt_version=version.version,
        experiment=experiment.name if experiment else None,
        variant=variant,
        model=version.model,
    )


def choose_pool(
    pools: Sequence[PoolConfig], model: str | None, adapter: str | None
) -> tuple[PoolConfig, str]:
    """The cheapest pool serving the model (and adapter); ties: higher priority, then name."""
    candidates = [
        p
        for p in pools
        if (model is None or p.model == model) and (adapter is None or adapter in p.adapters)
    ]
    if not candidates:
        wanted = f"model {model!r}" if model else "any model"
        if adapter:
            wanted += f" with adapter {adapter!r}"
        raise RoutingError(f"no configured pool serves {wanted}; pools: {[p.name for p in pools]}")
    ranked = sorted(candidates, key=cost_rank)
    chosen = ranked[0]
    if len(candidates) == 1:
        return chosen, f"only_pool: {chosen.name} is the one pool serving it"
    return chosen, (
        f"cheapest_healthy: {chosen.name} at ${chosen.cost_per_1k_tokens}/1k tokens "
        f"of {len(candidates)} candidates"
    )


def wanted_model(request: PromptRequest, choice: PromptChoice) -> str | None:
    return request.model or choice.model


def route(
    request: PromptRequest,
    prompts: PromptSet,
    pools: Sequence[PoolConfig],
    now: datetime,
    board: PoolBoard | None = None,
) -> RoutedRequest:
    """Raises PromptError, RoutingError or NoHealthyPool with a message fit for the app.

    With a board, the pool comes from the live states (and the decision is recorded on it);
    without one, from the configuration alone.
    """
    choice = choose_prompt(request, prompts)
    model = wanted_model(request, choice)
    if board is None:
        pool, reason = choose_pool(pools, model, request.adapter)
        pool_name, pool_model = pool.name, pool.model
    else:
        decision = board.route(model, request.adapter, request.sticky_key, now)
        pool_name, reason = decision.pool, decision.reason
        pool_model = decision.model or model or ""
    return RoutedRequest(
        request=request,
        prompt_name=choice.prompt_name,
        prompt_version=choice.prompt_version,
        experiment=choice.experiment,
        variant=choice.variant,
        messages=choice.messages,
        pool=pool_name,
        model=pool_model,
        route_reason=reason[:MAX_ROUTE_REASON],
        routed_at=now,
    )
