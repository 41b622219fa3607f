"""Prompt references as users type them: `NAME`, `NAME@VERSION`, `NAME@LABEL`. Pure."""

from __future__ import annotations

import re

from llmops.cli.errors import Mistake

_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.:/\-]+)(?:@(?P<at>[A-Za-z0-9_.:/\-]+))?$")


def parse_ref(text: str) -> tuple[str, str | None]:
    """`NAME`, `NAME@3` or `NAME@production` -> (name, "3" | "production" | None)."""
    found = _REF.match(text.strip())
    if found is None:
        raise Mistake(f"{text!r} is not a prompt reference (NAME, NAME@VERSION or NAME@LABEL)")
    return found.group("name"), found.group("at")


def version_or_label(at: str | None) -> tuple[int | None, str | None]:
    """What follows the @: a version number, else a label (None, None: neither given)."""
    if at is not None and at.isdigit():
        return int(at), None
    return None, at
