"""Per-request sampling for transformers continuous batching.

The CB manager of transformers 5.23 samples with one global `do_sample` flag and one global
torch RNG: with per-request processors it can vary temperature/top-k/top-p per request, but a
greedy request cannot share a batch with a sampled one, and no request can have its own seed.
These processors do the whole choice themselves, per row: temperature (0 = greedy), top-k,
top-p, then a draw from a uniform number derived from (seed, step), so a seeded request gives
the same tokens whatever else is in the batch. The manager runs with `do_sample=False`; its
argmax then reads the one token left. Rows of an all-greedy batch are left untouched (cheap).

The knobs of every request in a batch go into one int32 tensor inside the manager's generation
loop, where one bad value (a top_k past int32) would kill the loop and every request in it.
So values are checked three times: by the engine before a request is added, by the manager when
it admits one (`check_kwargs`: it fails that request alone), and per request in each step (a
request whose knobs still cannot be read is sampled greedily for that step and reported, so its
engine fails it alone).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
)
from transformers.generation.continuous_batching.requests import FutureRequestState
from transformers.generation.logits_process import LogitsProcessorList

_MASK64 = (1 << 64) - 1
_INT32_MAX = 2**31 - 1
_INT64 = (-(2**63), 2**63 - 1)
_GREEDY: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "seed": 0}
# Told (from the generation thread) the manager's id of a request whose knobs were unreadable.
InvalidHook = Callable[[str, str], None]


def uniform(seed: int, step: int) -> float:
    """A uniform number in [0, 1) from (seed, step): splitmix64, so no RNG state is shared."""
    z = (seed * 0x9E3779B97F4A7C15 + (step + 1) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


def sampling_kwargs(
    temperature: float, top_p: float, top_k: int | None, seed: int
) -> dict[str, Any]:
    """What a request carries to these processors (the manager's `logit_processor_kwargs`);
    ValueError if they cannot hold it."""
    kwargs = {
        "temperature": float(max(temperature, 0.0)),
        "top_p": float(top_p),
        "top_k": int(top_k or 0),
        "seed": int(seed),
    }
    check_values(kwargs)
    return kwargs


def check_values(kwargs: dict[str, Any]) -> None:
    """ValueError unless every knob present fits the processors: finite floats in range, top_k
    within int32 (0: off; the tensors are int32), seed within int64."""
    temperature = kwargs.get("temperature", 0.0)
    top_p = kwargs.get("top_p", 1.0)
    top_k = kwargs.get("top_k", 0)
    seed = kwargs.get("seed", 0)
    if not (isinstance(temperature, float) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite float >= 0, got {temperature!r}")
    if not (isinstance(top_p, float) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be a float in (0, 1], got {top_p!r}")
    if not (_is_int(top_k) and 0 <= top_k <= _INT32_MAX):
        raise ValueError(f"top_k must be an integer in 0..{_INT32_MAX}, got {top_k!r}")
    if not (_is_int(seed) and _INT64[0] <= seed <= _INT64[1]):
        raise ValueError(f"seed must be a 64-bit integer, got {seed!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _floats(values: list[float]) -> torch.Tensor:
    # The manager stores every processor argument in one int32 tensor: floats travel as bits.
    return torch.tensor(values, dtype=torch.float32).view(torch.int32)


def _kwargs(request: FutureRequestState) -> dict[str, Any]:
    kwargs: dict[str, Any] = request.state.logit_processor_kwargs
    return kwargs


class _Temperature(ContinuousBatchingLogitsProcessor):
    supported_kwargs: dict[str, type] = {"temperature": float}
    ignored_kwargs: tuple[str, ...] = ()

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.copy_(_floats([0.0]).expand_as(int32_tensor))

    def prepare_tensor_args(
        self, requests_with_new_token: list[FutureRequestState]
    ) -> torch.Tensor:
        return _floats([_kwargs(r).get("temperature", 0.0) for r in requests_with_new_token])

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        temperature = tensor_arg[: scores.size(0)].view(torch.float32)
        sampled = temperature > 0
        if not bool(sampled.any()):
            return scores
        divisor = torch.where(sampled, temperature, torch.ones_like(temperature))
        return scores / divisor.unsqueeze(-1)


class _TopK(ContinuousBatchingLogitsProcessor):
    supported_kwargs: dict[str, type] = {"top_k": int}
    ignored_kwargs: tuple[str, ...] = ()

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(0)

    def prepare_tensor_args(
        self, requests_with_new_token: list[FutureRequestState]
    ) -> torch.Tensor:
        return torch.tensor(
            [_kwargs(r).get("top_k", 0) for r in requests_with_new_token], dtype=torch.int32
        )

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        top_k = tensor_arg[: scores.size(0)].clamp(min=0, max=scores.size(-1))
        limit = int(top_k.max())
        if limit == 0:
            return scores
        # The k-th largest score is each row's threshold; rows with k=0 keep everything.
        best = torch.topk(scores, limit, dim=-1).values
        kth = best.gather(-1, (top_k.clamp(min=1) - 1).long().unsqueeze(-1))
        threshold = torch.where(top_k.unsqueeze(-1) > 0, kth, torch.full_like(kth, -float("inf")))
        return scores.masked_fill(scores < threshold, -float("inf"))


class _TopP(ContinuousBatchingLogitsProcessor):
    supported_kwargs: dict[str, type] = {"top_p": float}
    ignored_kwargs: tuple[str, ...] = ()

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.copy_(_floats([1.0]).expand_as(int32_tensor))

    def prepare_tensor_args(
        self, requests_with_new_token: list[FutureRequestState]
    ) -> torch.Tensor:
        return _floats([_kwargs(r).get("top_p", 1.0) for r in requests_with_new_token])

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        top_p = tensor_arg[: scores.size(0)].view(torch.float32)
        if not bool((top_p < 1.0).any()):
            return scores
        ordered, order = torch.sort(scores, dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (the first is kept).
        before = probs.cumsum(dim=-1) - probs
        limit = torch.where(top_p < 1.0, top_p, torch.full_like(top_p, 2.0)).unsqueeze(-1)
        drop = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before >= limit)
        return scores.masked_fill(drop, -float("inf"))


class _SeededDraw(ContinuousBatchingLogitsProcessor):
    """Draws the token of each sampled row; leaves one finite score so argmax returns it."""

    supported_kwargs: dict[str, type] = {"seed": int}
    ignored_kwargs: tuple[str, ...] = ()

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.copy_(_floats([-1.0]).expand_as(int32_tensor))

    def prepare_tensor_args(
        self, requests_with_new_token: list[FutureRequestState]
    ) -> torch.Tensor:
        draws = []
        for request in requests_with_new_token:
            kwargs = _kwargs(request)
            if kwargs.get("temperature", 0.0) > 0:
                draws.append(uniform(kwargs.get("seed", 0), request.state.generated_len()))
            else:
                draws.append(-1.0)  # greedy
        return _floats(draws)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        draw = tensor_arg[: scores.size(0)].view(torch.float32)
        sampled = draw >= 0
        if not bool(sampled.any()):
            return scores
        cdf = scores.double().softmax(dim=-1).cumsum(dim=-1)
        target = (draw.double().clamp(min=0.0) * cdf[:, -1]).unsqueeze(-1)
        # First token whose cumulative probability passes the draw: never a zero-probability one.
        chosen = torch.searchsorted(cdf, target, right=True).clamp(max=scores.size(-1) - 1)
        chosen = torch.where(sampled.unsqueeze(-1), chosen, scores.argmax(dim=-1, keepdim=True))
        return torch.full_like(scores, -float("inf")).scatter(-1, chosen, 0.0)


class PerRequestSampling(ContinuousBatchingLogitsProcessorList):
    """The processor list to install on a CB manager before it starts. `on_invalid` hears of
    a running request whose knobs could not be read (its engine fails it)."""

    def __init__(self, on_invalid: InvalidHook | None = None) -> None:
        processors = [_Temperature(), _TopK(), _TopP(), _SeededDraw()]
        super().__init__(LogitsProcessorList(processors), per_request_processors=False)
        # One argument row per processor (the base class counts only the ones it converts).
        self.tensors_required = len(processors)
        self._on_invalid = on_invalid

    def check_kwargs(self, kwargs: dict[Any, Any]) -> None:
        # The manager calls this as it admits a request and fails that request alone on error.
        super().check_kwargs(kwargs)
        check_values(kwargs)

    def prepare_tensor_args(
        self, requests_in_batch: list[FutureRequestState], arg_storage: torch.Tensor
    ) -> torch.Tensor:
        for request in requests_in_batch:
            state = request.state
            try:
                check_values(state.logit_processor_kwargs)
            except Exception as exc:  # this request's fault: never the whole batch's
                state.logit_processor_kwargs = dict(_GREEDY)
                if self._on_invalid is not None:
                    self._on_invalid(state.request_id, f"sampling parameters rejected: {exc}")
        return super().prepare_tensor_args(requests_in_batch, arg_storage)
