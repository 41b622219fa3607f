"""A/B experiments: weighted variants over the versions of one prompt."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import MAX_WEIGHT, Contract, Event, Name, Version


class Variant(Contract):
    name: Name
    prompt_version: Version | None = None
    weight: float = Field(ge=0.0, le=MAX_WEIGHT, allow_inf_nan=False)


class Experiment(Event):
    """An A/B experiment over versions of one prompt (llm.experiments, compacted)."""

    name: Name
    prompt_name: Name
    variants: list[Variant] = Field(min_length=1)
    status: Literal["draft", "running", "stopped"] = "running"

    @model_validator(mode="after")
    def _weights(self) -> Experiment:
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("experiment variants need a positive total weight")
        if len({v.name for v in self.variants}) != len(self.variants):
            raise ValueError("variant names must be unique")
        return self
