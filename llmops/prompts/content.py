"""Prompt files: what `llmops prompts push` reads, checked before anything is published.

Two shapes, both YAML:

- one prompt per file (what a prompt engineer writes)::

    name: support-answer
    description: Answers a support question in one sentence.
    model: gemma-3-270m                 # optional: the model it was written for
    params: {temperature: 0.2, max_tokens: 128}
    variables:
      product: string                   # short form: the type, required
      question: {type: string, description: the user's question}
      tone: {type: string, default: friendly}
      n: {type: int, default: 3}
    messages:
      - {role: system, content: "You support {{ product }}; be {{ tone }}."}
      - {role: user, content: "{{ question }}"}
    response_schema: {type: object, properties: {answer: {type: string}}}
    metadata: {owner: support-team, tags: [support]}
    labels: [staging]                   # optional: moved to this content's version

- the seed file (llmops/local/demo/prompts.yaml): `prompts: [{name, versions: [{version,
  labels, messages, ...}]}]`; each listed version is pushed in order, its labels moved to
  whatever version its content is (or becomes). An entry of `prompts:` without `versions:`
  is one prompt in the first shape. `experiments:` in such a file are not this command's.

Checked here, before publishing: the templates parse, a prompt that declares variables uses
no undeclared one, a response schema is a valid JSON Schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError, meta
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError

from llmops.kafka.deadletter import describe_validation_error
from llmops.prompts.templates import TEMPLATE_ENV, costly_shapes
from schemas import PromptVersion
from schemas.prompts import CONTENT_FIELDS

PROMPT_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 1_048_576  # a prompt file is text for humans: a megabyte is plenty
MAX_FILES = 10_000
# Keys a single-prompt file may have: its content, its name and the labels to move.
PROMPT_KEYS = frozenset({"name", "labels", *CONTENT_FIELDS})


class PromptFileError(ValueError):
    """A prompt file that cannot be pushed: says which file and what is wrong."""


@dataclass(frozen=True)
class Draft:
    """One version's content as a file gives it, not yet numbered."""

    version: PromptVersion  # numbered 1 until published; content_hash is what counts
    labels: tuple[str, ...]
    source: str  # file (and entry) it came from, for messages
    file_version: int | None = None  # the seed file's own number, if it gave one

    @property
    def name(self) -> str:
        return self.version.name

    @property
    def content_hash(self) -> str:
        return self.version.content_hash


@dataclass
class PromptFiles:
    drafts: list[Draft] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _variables(raw: Any, source: str) -> dict[str, Any]:
    """The short form `name: type` expanded; anything else is left to the contract."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise PromptFileError(f"{source}: `variables` must be a mapping of name to type/spec")
    return {
        str(name): {"type": spec} if isinstance(spec, str) else spec for name, spec in raw.items()
    }


def check_templates(version: PromptVersion, source: str) -> None:
    """Each template parses, and uses only declared variables when any are declared."""
    used: set[str] = set()
    for number, message in enumerate(version.messages, 1):
        try:
            used |= meta.find_undeclared_variables(TEMPLATE_ENV.parse(message.content))
        except TemplateSyntaxError as exc:
            raise PromptFileError(
                f"{source}: message {number} is not a valid template: {exc.message} "
                f"(line {exc.lineno})"
            ) from None
        costly = costly_shapes(message.content)
        if costly:
            raise PromptFileError(
                f"{source}: message {number} has {', '.join(costly)}: a template's work must "
                "grow no faster than its input (the router renders every request)"
            )
    if version.variables:
        undeclared = sorted(used - set(version.variables))
        if undeclared:
            raise PromptFileError(
                f"{source}: the templates use undeclared variable(s) {', '.join(undeclared)}; "
                "declare them under `variables:`"
            )


def check_response_schema(version: PromptVersion, source: str) -> None:
    if version.response_schema is None:
        return
    try:
        Draft202012Validator.check_schema(version.response_schema)
    except SchemaError as exc:
        raise PromptFileError(
            f"{source}: response_schema is not a valid JSON Schema: {exc.message}"
        ) from None


def draft_from_data(
    name: Any, data: Mapping[str, Any], source: str, file_version: int | None = None
) -> Draft:
    """One version's content (a mapping of CONTENT_FIELDS plus `labels`), checked."""
    labels = data.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise PromptFileError(f"{source}: `labels` must be a list of names")
    content = {k: v for k, v in data.items() if k in CONTENT_FIELDS}
    content["variables"] = _variables(content.get("variables"), source)
    try:
        version = PromptVersion.model_validate({"name": name, "version": 1, **content})
    except ValidationError as exc:
        raise PromptFileError(f"{source}: {describe_validation_error(exc)}") from None
    check_templates(version, source)
    check_response_schema(version, source)
    return Draft(version, tuple(labels), source, file_version)


def _single(data: Mapping[str, Any], source: str) -> Draft:
    unknown = sorted(set(data) - PROMPT_KEYS)
    if unknown:
        raise PromptFileError(
            f"{source}: unknown key(s) {', '.join(unknown)}; a prompt has "
            f"{', '.join(sorted(PROMPT_KEYS))}"
        )
    return draft_from_data(data.get("name"), data, source)


def _seed(prompts: Any, source: str) -> Iterator[Draft]:
    if not isinstance(prompts, list):
        raise PromptFileError(f"{source}: `prompts` must be a list")
    for index, prompt in enumerate(prompts):
        where = f"{source} prompts[{index}]"
        if not isinstance(prompt, Mapping):
            raise PromptFileError(f"{where}: each prompt must be a mapping")
        versions = prompt.get("versions")
        if versions is None:
            yield _single(prompt, where)
            continue
        if not isinstance(versions, list) or not versions:
            raise PromptFileError(f"{where}: `versions` must be a non-empty list")
        for number, entry in enumerate(versions):
            at = f"{where} versions[{number}]"
            if not isinstance(entry, Mapping):
                raise PromptFileError(f"{at}: each version must be a mapping")
            file_version = entry.get("version")
            if file_version is not None and not isinstance(file_version, int):
                raise PromptFileError(f"{at}: `version` must be a number")
            yield draft_from_data(prompt.get("name"), entry, at, file_version)


def drafts_from_text(text: str, source: str) -> list[Draft]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptFileError(f"{source}: not YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise PromptFileError(f"{source}: expected a prompt (a mapping with `name`)")
    if "prompts" in data:
        return list(_seed(data["prompts"], source))
    if "experiments" in data and "name" not in data:
        return []  # an experiments-only file: nothing to push here
    return [_single(data, source)]


def prompt_paths(target: Path) -> list[Path]:
    """The file, or every YAML file under the directory (sorted, so pushes are repeatable)."""
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise PromptFileError(f"{target}: no such file or directory")
    found = sorted(p for p in target.rglob("*") if p.suffix in PROMPT_SUFFIXES and p.is_file())
    if len(found) > MAX_FILES:
        raise PromptFileError(f"{target}: {len(found)} files, more than {MAX_FILES}")
    return found


def read_prompt_files(targets: Iterable[Path]) -> PromptFiles:
    result = PromptFiles()
    for target in targets:
        for path in prompt_paths(target):
            if path.stat().st_size > MAX_FILE_BYTES:
                raise PromptFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
            result.files.append(path)
            result.drafts.extend(drafts_from_text(path.read_text(encoding="utf-8"), str(path)))
    return result
