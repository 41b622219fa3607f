"""The prompt registry's records: immutable, numbered versions of named prompts, and the
moves of their labels (movable pointers such as `production`), both on llm.prompts.

A version is identified by its content hash: sha256 of the canonical JSON of what the prompt
says and does (messages, declared variables, model and sampling defaults, response schema,
metadata, description), never of its labels, which move independently. A version whose
`content_hash` does not match its content is refused when decoded, so a tampered or truncated
version cannot be served under its old identity.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from schemas.base import (
    MAX_ATTRIBUTES,
    MAX_INT32,
    MAX_INT64,
    MAX_NAME_LEN,
    MAX_VERSION,
    MIN_INT64,
    Contract,
    Event,
    Identifier,
    Name,
    Version,
)
from schemas.requests import (
    MAX_MESSAGES,
    MAX_OUTPUT_TOKENS,
    MAX_STOP_LEN,
    MAX_STOP_SEQUENCES,
    MAX_TEMPERATURE,
    ChatMessage,
)

VariableType = Literal["string", "int", "float", "bool", "json"]
MAX_VARIABLES = 128  # as many as a request's PromptRef carries
MAX_REASON_LEN = 1024
MAX_ACTOR_LEN = 128
MAX_SOURCE_LEN = 1024
CONTENT_HASH_PATTERN = r"^[0-9a-f]{64}$"
# Python types a declared variable's default may have, per declared type.
_DEFAULT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


class VariableSpec(Contract):
    """A declared template variable: its type, and whether a request must give it.

    Requests carry variables as strings (PromptRef.variables); the registry converts them to
    the declared type before rendering, so `{{ n + 1 }}` works for an int and a wrong value is
    the request's error, not a template crash. A variable with a default is optional."""

    type: VariableType = "string"
    required: bool = True
    default: JsonValue = None
    description: str = Field(default="", max_length=1024)

    @model_validator(mode="before")
    @classmethod
    def _default_makes_optional(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("default") is not None and "required" not in data:
            return {**data, "required": False}
        return data

    @model_validator(mode="after")
    def _default_fits_type(self) -> VariableSpec:
        if self.default is None or self.type == "json":
            return self
        allowed = _DEFAULT_TYPES[self.type]
        value = self.default
        # bool is an int in Python: an int variable's default of `true` is a mistake.
        if isinstance(value, bool) != (self.type == "bool") or not isinstance(value, allowed):
            raise ValueError(f"default {value!r} is not of type {self.type}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a float default must be finite")
        return self


class PromptParams(Contract):
    """Sampling defaults of a prompt: applied to a request for each knob it did not set.
    Unset (None) knobs fall through to the request's own defaults."""

    max_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int | None = Field(default=None, ge=1, le=MAX_INT32)
    seed: int | None = Field(default=None, ge=MIN_INT64, le=MAX_INT64)
    stop: list[Annotated[str, Field(max_length=MAX_STOP_LEN)]] | None = Field(
        default=None, max_length=MAX_STOP_SEQUENCES
    )


# The fields that make a version what it is: its content hash covers exactly these.
CONTENT_FIELDS = (
    "messages",
    "variables",
    "model",
    "params",
    "response_schema",
    "metadata",
    "description",
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 as is: equal content, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(content: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a version's content (CONTENT_FIELDS, JSON mode,
    None left out so a field added later with a None default changes no existing hash)."""
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


class PromptVersion(Event):
    """One immutable version of a named prompt (llm.prompts, compacted, key name:version).

    `labels` is the seed file's way of naming labels with a version; on the topic labels
    move by LabelMove events, and a version's own `labels` only count for labels no move
    has set (llmops/prompts/registry.py)."""

    name: Name
    version: Version
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    labels: list[Name] = Field(default_factory=list, max_length=64)
    model: Name | None = None
    description: str = Field(default="", max_length=4096)
    variables: dict[Name, VariableSpec] = Field(default_factory=dict, max_length=MAX_VARIABLES)
    params: PromptParams = Field(default_factory=PromptParams)
    response_schema: dict[str, JsonValue] | None = None
    metadata: dict[Name, JsonValue] = Field(default_factory=dict, max_length=MAX_ATTRIBUTES)
    content_hash: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    # Who published it and from which file: history, not content (not hashed).
    actor: str = Field(default="", max_length=MAX_ACTOR_LEN)
    source: str = Field(default="", max_length=MAX_SOURCE_LEN)

    def content(self) -> dict[str, Any]:
        """What the content hash covers, as JSON data."""
        return self.model_dump(mode="json", include=set(CONTENT_FIELDS), exclude_none=True)

    def computed_hash(self) -> str:
        return content_hash(self.content())

    @model_validator(mode="after")
    def _hash_matches(self) -> PromptVersion:
        actual = self.computed_hash()
        if not self.content_hash:
            object.__setattr__(self, "content_hash", actual)  # frozen: set once, here
        elif self.content_hash != actual:
            raise ValueError(
                f"content_hash {self.content_hash[:12]}... does not match the content "
                f"({actual[:12]}...)"
            )
        return self


class LabelMove(Event):
    """A label of a prompt now points at `version` (llm.prompts, key name@label: compacted,
    the newest state of each label survives).

    `previous` is the version the label held before (None: a new label), so even a compacted
    topic can undo one move. A protected label moves only to a version with a passing suite
    run (`suite_run_id`), unless `forced` with a `reason`; `rollback` marks a move back to a
    version that held the label before."""

    name: Name
    label: Name
    version: Version
    previous: Version | None = None
    actor: str = Field(default="", max_length=MAX_ACTOR_LEN)
    reason: str = Field(default="", max_length=MAX_REASON_LEN)
    forced: bool = False
    rollback: bool = False
    suite_run_id: Identifier | None = None

    @model_validator(mode="after")
    def _forced_needs_reason(self) -> LabelMove:
        if self.forced and not self.reason.strip():
            raise ValueError("a forced label move needs a reason")
        return self

    @property
    def key(self) -> str:
        return label_key(self.name, self.label)


def version_key(name: str, version: int) -> str:
    """The Kafka key of a version: one record per version survives compaction."""
    return f"{name}:{version}"


def label_key(name: str, label: str) -> str:
    """The Kafka key of a label: its newest move survives compaction."""
    return f"{name}@{label}"


_ADDRESS = re.compile(
    rf"(?P<name>[A-Za-z0-9_.:/\-]{{1,{MAX_NAME_LEN}}})"
    rf"(?:@(?P<at>[A-Za-z0-9_.:/\-]{{1,{MAX_NAME_LEN}}}))?"
)


class PromptAddress(BaseModel):
    """A prompt as people write it: `NAME`, `NAME@VERSION` or `NAME@LABEL` (bounded as the
    contract's Name and Version, however it is built)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    version: Version | None = None
    label: Name | None = None

    def __str__(self) -> str:
        at = self.version if self.version is not None else self.label
        return self.name if at is None else f"{self.name}@{at}"


def parse_prompt_address(text: str, *, at_required: bool = False) -> PromptAddress:
    """`NAME`, `NAME@VERSION` (digits) or `NAME@LABEL` -> its parts; the one reader of prompt
    references that CLIs, suites and experiments share. ValueError says what is wrong in one
    line; `at_required`: a bare NAME is refused too."""
    found = _ADDRESS.fullmatch(text.strip())
    if found is None:
        raise ValueError(
            f"{text[:200]!r} is not a prompt reference (NAME, NAME@VERSION or NAME@LABEL; "
            f"letters, digits and _ . : / - only, at most {MAX_NAME_LEN} each)"
        )
    name, at = found["name"], found["at"]
    if at is None:
        if at_required:
            raise ValueError(f"{text[:200]!r}: give the prompt as NAME@VERSION or NAME@LABEL")
        return PromptAddress(name=name)
    if at.isdigit():
        version = int(at)
        if not 1 <= version <= MAX_VERSION:
            raise ValueError(f"{text[:200]!r}: a version is a number from 1 to {MAX_VERSION}")
        return PromptAddress(name=name, version=version)
    return PromptAddress(name=name, label=at)
