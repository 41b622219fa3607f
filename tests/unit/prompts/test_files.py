"""Prompt files: several YAML files make one set, checked as a whole."""

from importlib import resources
from pathlib import Path

import pytest

from llmops.prompts.files import load_prompt_set
from llmops.prompts.registry import PromptError
from schemas import PromptRef

PROMPT = """
prompts:
  - name: greet
    versions:
      - version: 1
        labels: [production]
        messages: [{role: user, content: "Hello {{ name }}"}]
"""
EXPERIMENT = """
experiments:
  - name: greet-ab
    prompt_name: greet
    variants: [{name: control, prompt_version: 1, weight: 1}]
"""


def test_files_merge_into_one_set(tmp_path: Path) -> None:
    (tmp_path / "prompts.yaml").write_text(PROMPT)
    (tmp_path / "experiments.yaml").write_text(EXPERIMENT)
    (tmp_path / "empty.yaml").write_text("")
    prompts = load_prompt_set(
        [tmp_path / "prompts.yaml", tmp_path / "empty.yaml", tmp_path / "experiments.yaml"]
    )
    assert prompts.resolve(PromptRef(name="greet")).version == 1
    assert prompts.experiments["greet-ab"].prompt_name == "greet"


def test_an_experiment_is_checked_against_every_file(tmp_path: Path) -> None:
    (tmp_path / "experiments.yaml").write_text(EXPERIMENT)
    with pytest.raises(PromptError, match="unknown prompt 'greet'"):
        load_prompt_set([tmp_path / "experiments.yaml"])


def test_the_demo_prompts_load() -> None:
    demo = Path(str(resources.files("llmops.local.demo") / "prompts.yaml"))
    assert load_prompt_set([demo]).versions
