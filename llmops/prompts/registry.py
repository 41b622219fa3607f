"""The prompt set: named, versioned templates with labels, and the experiments over them.

Pure: built from plain data (`prompt_set_from_data`); reading that data from YAML files is
llmops/prompts/files.py's (the compacted llm.prompts topic later).
Templates are Jinja2 in a sandbox with strict undefined variables, so a missing variable is
a clear error and a variable's value can never run template code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from schemas import ChatMessage, Experiment, PromptRef, PromptVersion

_JINJA = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
DEFAULT_LABEL = "production"


class PromptError(LookupError):
    """The request names a prompt, version, label or variable that does not resolve."""


class MissingVariable(PromptError):
    """The prompt resolved but its template uses a variable the request did not give."""


@dataclass
class PromptSet:
    versions: dict[str, dict[int, PromptVersion]] = field(default_factory=dict)
    experiments: dict[str, Experiment] = field(default_factory=dict)

    def add(self, version: PromptVersion) -> None:
        self.versions.setdefault(version.name, {})[version.version] = version

    def add_experiment(self, experiment: Experiment) -> None:
        self.experiments[experiment.name] = experiment

    def resolve(self, ref: PromptRef, version: int | None = None) -> PromptVersion:
        """The pinned (or given) version, else the highest version carrying the label."""
        known = self.versions.get(ref.name)
        if not known:
            raise PromptError(f"unknown prompt {ref.name!r}")
        wanted = version if version is not None else ref.version
        if wanted is not None:
            if wanted not in known:
                raise PromptError(f"prompt {ref.name!r} has no version {wanted}")
            return known[wanted]
        label = ref.label or DEFAULT_LABEL
        labelled = [v for v in known.values() if label in v.labels]
        if not labelled:
            raise PromptError(f"prompt {ref.name!r} has no version labelled {label!r}")
        return max(labelled, key=lambda v: v.version)

    def running_experiment(self, prompt_name: str) -> Experiment | None:
        for experiment in self.experiments.values():
            if experiment.prompt_name == prompt_name and experiment.status == "running":
                return experiment
        return None


def render(version: PromptVersion, variables: Mapping[str, str]) -> list[ChatMessage]:
    try:
        return [
            ChatMessage(role=m.role, content=_JINJA.from_string(m.content).render(**variables))
            for m in version.messages
        ]
    except UndefinedError as exc:
        raise MissingVariable(f"prompt {version.name!r} v{version.version}: {exc}") from exc
    except TemplateError as exc:
        raise PromptError(f"prompt {version.name!r} v{version.version}: {exc}") from exc


def prompt_set_from_data(data: Mapping[str, Any]) -> PromptSet:
    """From `{prompts: [{name, versions: [{version, labels, messages}]}], experiments: [...]}`."""
    prompts = PromptSet()
    for prompt in data.get("prompts") or []:
        for version in prompt.get("versions") or []:
            prompts.add(PromptVersion.model_validate({"name": prompt["name"], **version}))
    for experiment in data.get("experiments") or []:
        prompts.add_experiment(Experiment.model_validate(experiment))
    for experiment in prompts.experiments.values():
        for variant in experiment.variants:
            if variant.prompt_version is not None:
                prompts.resolve(PromptRef(name=experiment.prompt_name), variant.prompt_version)
    return prompts
