"""Secrets the embedded stack makes for itself: generated once into the data directory,
readable by its owner only (mode 0600 from the first byte), then reused at every start.

Used for the signing key (llmops/kafka/signing.py); any other generated secret can use it too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

SIGNING_KEY_FILE = "signing-key"


class SecretFileError(RuntimeError):
    """A secret file exists but cannot be used."""


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`; made with `make` and written there first if there is none
    (`write_private_once`: of two first starts at once, both keep the same secret)."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    write_private_once(path, make() + "\n")
    return _read(path)


def write_private_once(path: Path, text: str) -> None:
    """Write `text` to `path` unless a file is there already, mode 0600 from the first byte.

    Written to a private staging file and linked into place: no reader ever sees half a
    file, and of two first writers at once both keep the file that landed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def _read(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecretFileError(
            f"{path} is readable by others (mode {mode:o}); `chmod 600 {path}` or delete it"
        )
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise SecretFileError(f"{path} is empty; delete it and a new secret is made")
    return secret


def embedded_signing_key(data_dir: Path) -> str:
    """The embedded stack's signing key (256 random bits, hex), made at its first start."""
    return read_or_create_secret(data_dir / SIGNING_KEY_FILE, lambda: secrets.token_hex(32))
