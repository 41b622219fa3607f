"""The prompt set from YAML files: the registry's one reader of the filesystem."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from llmops.prompts.registry import PromptSet, prompt_set_from_data


def demo_prompts_file() -> Path:
    """The demo prompt set: what `llmops up` seeds and the router starts from, unless
    LLMOPS_PROMPTS_FILE names another."""
    return Path(str(resources.files("llmops.local.demo") / "prompts.yaml"))


def seed_prompts_file(configured: Path | None) -> Path:
    return configured or demo_prompts_file()


def load_prompt_set(paths: Iterable[Path]) -> PromptSet:
    """The files' prompts and experiments merged, in order, then checked as one set."""
    merged: dict[str, list[Any]] = {"prompts": [], "experiments": []}
    for path in paths:
        data = yaml.safe_load(path.read_text()) or {}
        merged["prompts"].extend(data.get("prompts") or [])
        merged["experiments"].extend(data.get("experiments") or [])
    return prompt_set_from_data(merged)
