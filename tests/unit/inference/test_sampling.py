"""Per-request sampling processors, on hand-made score rows."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from transformers.generation.continuous_batching.requests import (
    FutureRequestState,
    RequestState,
)

from services.inference.engines.sampling import PerRequestSampling, sampling_kwargs, uniform


def _requests(*kwargs: dict[str, Any], generated: int = 0) -> list[FutureRequestState]:
    out = []
    for i, kw in enumerate(kwargs):
        state = RequestState(request_id=f"r{i}", initial_tokens=[1, 2], logit_processor_kwargs=kw)
        state.generated_tokens = [0] * generated
        out.append(
            FutureRequestState(state, has_new_token=True, complete_blocks={}, query_length=1)
        )
    return out


def _process(scores: torch.Tensor, *kwargs: dict[str, Any], generated: int = 0) -> torch.Tensor:
    processors = PerRequestSampling()
    storage = torch.zeros((processors.tensors_required, scores.size(0)), dtype=torch.int32)
    args = processors.prepare_tensor_args(_requests(*kwargs, generated=generated), storage)
    return processors(torch.zeros(scores.size(0), dtype=torch.long), scores.clone(), args)


def _chosen(processed: torch.Tensor) -> list[int]:
    return [int(i) for i in processed.argmax(dim=-1)]


SCORES = torch.tensor([[1.0, 3.0, 2.0, 0.5], [0.0, 0.1, 0.2, 5.0]])


def test_uniform_is_deterministic_and_in_range() -> None:
    draws = [uniform(seed, step) for seed in range(20) for step in range(50)]
    assert all(0.0 <= u < 1.0 for u in draws)
    assert draws == [uniform(seed, step) for seed in range(20) for step in range(50)]
    assert len(set(draws)) == len(draws)
    assert abs(sum(draws) / len(draws) - 0.5) < 0.05  # not a timing bound: a loose sanity check


def test_kwargs_have_the_types_the_manager_checks() -> None:
    kw = sampling_kwargs(1, 1, None, 3)
    assert kw == {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": 3}
    assert isinstance(kw["temperature"], float) and isinstance(kw["top_p"], float)
    assert sampling_kwargs(-2.0, 0.5, 4, 1)["temperature"] == 0.0


def test_all_greedy_batch_is_left_untouched() -> None:
    greedy = sampling_kwargs(0.0, 1.0, None, 0)
    assert torch.equal(_process(SCORES, greedy, greedy), SCORES)


def test_greedy_and_sampled_rows_share_a_batch() -> None:
    greedy = sampling_kwargs(0.0, 1.0, None, 0)
    sampled = sampling_kwargs(1.0, 1.0, 1, 9)  # top_k=1: only the best token survives
    processed = _process(SCORES, greedy, sampled)
    assert _chosen(processed) == [1, 3]
    finite = torch.isfinite(processed[1])
    assert int(finite.sum()) == 1  # the sampled row keeps exactly the drawn token


def test_top_k_keeps_only_the_k_best() -> None:
    for seed in range(30):
        row = _chosen(_process(SCORES[:1], sampling_kwargs(5.0, 1.0, 2, seed)))[0]
        assert row in (1, 2)


def test_top_p_keeps_the_smallest_nucleus() -> None:
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    picked = {_chosen(_process(scores, sampling_kwargs(1.0, 0.7, None, s)))[0] for s in range(60)}
    assert picked == {0, 1}  # 0.5 < 0.7 needs the second token; 0.8 >= 0.7 stops there


def test_draws_follow_the_distribution() -> None:
    probs = [0.6, 0.3, 0.1]
    scores = torch.log(torch.tensor([probs]))
    counts = [0, 0, 0]
    for seed in range(3000):
        counts[_chosen(_process(scores, sampling_kwargs(1.0, 1.0, None, seed)))[0]] += 1
    for count, p in zip(counts, probs, strict=True):
        assert abs(count / 3000 - p) < 4 * math.sqrt(p * (1 - p) / 3000)


def test_same_seed_and_step_give_the_same_token_other_steps_vary() -> None:
    scores = torch.zeros((1, 50))
    kw = sampling_kwargs(1.0, 1.0, None, 123)
    same = {_chosen(_process(scores, kw, generated=4))[0] for _ in range(5)}
    assert len(same) == 1
    steps = {_chosen(_process(scores, kw, generated=g))[0] for g in range(20)}
    assert len(steps) > 5


@pytest.mark.parametrize("temperature", [0.3, 3.0])
def test_temperature_sharpens_or_flattens(temperature: float) -> None:
    scores = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    best = sum(
        _chosen(_process(scores, sampling_kwargs(temperature, 1.0, None, s)))[0] == 0
        for s in range(400)
    )
    if temperature < 1:
        assert best > 0.85 * 400
    else:
        assert best < 0.6 * 400


def test_a_row_whose_knobs_cannot_be_read_is_greedy_and_reported_alone() -> None:
    """Inside the generation step, one request's unreadable knobs (here a top_k past int32,
    which overflowed the int32 tensor and killed the loop) must not fail the batch."""
    reported: list[tuple[str, str]] = []
    processors = PerRequestSampling(on_invalid=lambda rid, why: reported.append((rid, why)))
    good = sampling_kwargs(0.8, 1.0, 1, 3)
    bad = sampling_kwargs(0.8, 1.0, None, 3) | {"top_k": 2**31}
    requests = _requests(good, bad)
    storage = torch.zeros((processors.tensors_required, 2), dtype=torch.int32)
    args = processors.prepare_tensor_args(requests, storage)
    processed = processors(torch.zeros(2, dtype=torch.long), SCORES.clone(), args)
    assert [rid for rid, _ in reported] == ["r1"] and "top_k" in reported[0][1]
    assert _chosen(processed) == [1, 3]  # top_k=1 keeps row 0's best; row 1 is greedy
    assert requests[1].state.logit_processor_kwargs["top_k"] == 0


@pytest.mark.parametrize(
    "knobs",
    [{"top_k": 2**31}, {"top_k": -1}, {"temperature": float("nan")}, {"seed": 2**64}],
)
def test_the_manager_admission_check_refuses_unholdable_knobs(knobs: dict[str, Any]) -> None:
    processors = PerRequestSampling()
    processors.check_kwargs(sampling_kwargs(0.5, 0.9, 10, 1))
    with pytest.raises(ValueError):
        processors.check_kwargs(sampling_kwargs(0.5, 0.9, 10, 1) | knobs)
