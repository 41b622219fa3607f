"""The prompt set: named, versioned templates, their labels, and the experiments over them.

Pure: built from plain data (`prompt_set_from_data`: the seed file's shape) and from events
(`add`, `move_label`, `add_experiment`: the llm.prompts and llm.experiments topics, read by
llmops/prompts/live.py). Labels are pointers: a LabelMove sets one; a version's own `labels`
(the seed file's way of saying it) count only for labels no move has set, highest version
first, as they always did.

Templates are Jinja2 in a sandbox with strict undefined variables, so a missing variable is
a clear error and a variable's value can never run template code (llmops/prompts/templates.py
also bounds what rendering may cost). Declared variables are
converted to their type before rendering (a request carries strings).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError, UndefinedError

from llmops.prompts.templates import render_text
from schemas import (
    ChatMessage,
    Experiment,
    LabelMove,
    PromptRef,
    PromptRequest,
    PromptVersion,
    SamplingParams,
)
from schemas.prompts import VariableSpec

DEFAULT_LABEL = "production"
# Moves of one label remembered in memory (rollbacks look this far back; the store has all).
MAX_MOVES_KEPT = 1000
# A request's int variable: digits only, and no longer than an int64 (no huge-int parsing).
_INT = re.compile(r"^[+-]?\d{1,19}$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class PromptError(LookupError):
    """The request names a prompt, version, label or variable that does not resolve."""


class MissingVariable(PromptError):
    """The prompt resolved but a variable it needs is absent, or not of its declared type."""


@dataclass
class PromptSet:
    versions: dict[str, dict[int, PromptVersion]] = field(default_factory=dict)
    experiments: dict[str, Experiment] = field(default_factory=dict)
    # name -> label -> the newest move of it (set by events, never by a version's `labels`)
    moves: dict[str, dict[str, LabelMove]] = field(default_factory=dict)
    # name -> label -> every move seen, oldest first (a compacted topic keeps the newest only)
    history: dict[str, dict[str, list[LabelMove]]] = field(default_factory=dict)

    def add(self, version: PromptVersion) -> None:
        self.versions.setdefault(version.name, {})[version.version] = version

    def move_label(self, move: LabelMove) -> None:
        """Point `move.label` at `move.version`; the newest event wins (topic order)."""
        self.moves.setdefault(move.name, {})[move.label] = move
        moves = self.history.setdefault(move.name, {}).setdefault(move.label, [])
        moves.append(move)
        if len(moves) > MAX_MOVES_KEPT:  # a long-lived reader of an uncompacted topic
            del moves[: len(moves) - MAX_MOVES_KEPT]

    def add_experiment(self, experiment: Experiment) -> None:
        """The experiment's newest state replaces the old one; a state of a lower revision
        (a replay, a stale writer) is ignored."""
        known = self.experiments.get(experiment.name)
        if known is not None and getattr(known, "revision", 0) > getattr(experiment, "revision", 0):
            return
        self.experiments[experiment.name] = experiment

    def labels(self, name: str) -> dict[str, int]:
        """Every label of the prompt and the version it points at."""
        pointed: dict[str, int] = {}
        for number in sorted(self.versions.get(name, {})):
            for label in self.versions[name][number].labels:
                pointed[label] = number  # the seed's way: highest version carrying it
        for label, move in self.moves.get(name, {}).items():
            pointed[label] = move.version
        return pointed

    def labels_of(self, name: str, version: int) -> list[str]:
        return sorted(label for label, v in self.labels(name).items() if v == version)

    def label_version(self, name: str, label: str) -> int | None:
        """What the label points at (a move first, else the seed's highest carrier); the
        router asks this per request, so it looks at one label only."""
        move = self.moves.get(name, {}).get(label)
        if move is not None:
            return move.version
        carriers = [n for n, v in self.versions.get(name, {}).items() if label in v.labels]
        return max(carriers) if carriers else None

    def latest(self, name: str) -> PromptVersion | None:
        known = self.versions.get(name)
        return known[max(known)] if known else None

    def with_hash(self, name: str, digest: str) -> PromptVersion | None:
        """The (lowest) version of the prompt with this content hash, if any."""
        for number in sorted(self.versions.get(name, {})):
            if self.versions[name][number].content_hash == digest:
                return self.versions[name][number]
        return None

    def resolve(self, ref: PromptRef, version: int | None = None) -> PromptVersion:
        """The pinned (or given) version, else the version the label points at."""
        known = self.versions.get(ref.name)
        if not known:
            raise PromptError(f"unknown prompt {ref.name!r}")
        wanted = version if version is not None else ref.version
        if wanted is not None:
            if wanted not in known:
                raise PromptError(f"prompt {ref.name!r} has no version {wanted}")
            return known[wanted]
        label = ref.label or DEFAULT_LABEL
        pointed = self.label_version(ref.name, label)
        if pointed is None:
            raise PromptError(f"prompt {ref.name!r} has no version labelled {label!r}")
        if pointed not in known:
            # A move can arrive before its version (or the version was never published).
            raise PromptError(
                f"prompt {ref.name!r}: label {label!r} points at version {pointed}, "
                "which this registry does not have"
            )
        return known[pointed]

    def running_experiment(self, prompt_name: str) -> Experiment | None:
        for experiment in self.experiments.values():
            if experiment.prompt_name == prompt_name and experiment.status == "running":
                return experiment
        return None


def _convert(prompt: str, name: str, spec: VariableSpec, raw: str) -> Any:
    """A request's string as the declared type, or MissingVariable saying what was wrong."""
    text = raw.strip()
    try:
        if spec.type == "string":
            return raw
        if spec.type == "int" and _INT.match(text):
            return int(text)
        if spec.type == "float":
            number = float(text)
            if math.isfinite(number):
                return number
        if spec.type == "bool" and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        if spec.type == "json":
            return json.loads(raw)
    except (ValueError, RecursionError):
        pass
    shown = raw if len(raw) <= 40 else raw[:40] + "..."
    raise MissingVariable(f"{prompt}: variable {name!r} must be of type {spec.type}, got {shown!r}")


def template_values(version: PromptVersion, variables: Mapping[str, str]) -> dict[str, Any]:
    """The values the templates see: the request's strings, declared ones converted to their
    type and absent optional ones at their default. Raises MissingVariable."""
    prompt = f"prompt {version.name!r} v{version.version}"
    values: dict[str, Any] = dict(variables)
    missing = []
    for name, spec in version.variables.items():
        if name in variables:
            values[name] = _convert(prompt, name, spec, variables[name])
        elif spec.required:
            missing.append(f"{name} ({spec.type})")
        else:
            values[name] = spec.default
    if missing:
        raise MissingVariable(f"{prompt}: missing variable(s) {', '.join(missing)}")
    return values


def render(version: PromptVersion, variables: Mapping[str, str]) -> list[ChatMessage]:
    values = template_values(version, variables)
    try:
        return [
            ChatMessage(role=m.role, content=render_text(m.content, values))
            for m in version.messages
        ]
    except UndefinedError as exc:
        raise MissingVariable(f"prompt {version.name!r} v{version.version}: {exc}") from exc
    except TemplateError as exc:
        raise PromptError(f"prompt {version.name!r} v{version.version}: {exc}") from exc
    except (TypeError, ValueError, ArithmeticError) as exc:  # e.g. {{ n + 1 }} on bad data
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


def apply_prompt_defaults(request: PromptRequest, version: PromptVersion) -> PromptRequest:
    """The request with the prompt's sampling defaults where it left a knob at the contract's
    default (a request on the wire carries every knob, so "left at the default" is the one
    sign of "not set" every client gives), and a JSON answer asked for when the prompt has a
    response schema and the request asked for none."""
    defaults = SamplingParams()
    updates = {
        knob: value
        for knob, value in version.params.model_dump(exclude_none=True).items()
        if getattr(request.sampling, knob) == getattr(defaults, knob)
    }
    changes: dict[str, Any] = {}
    if updates:
        changes["sampling"] = request.sampling.model_copy(update=updates)
    if version.response_schema is not None and request.response_format == "text":
        changes["response_format"] = "json"
    return request.model_copy(update=changes) if changes else request
