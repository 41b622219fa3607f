"""Who may use the embedded store: two accounts generated on its first start, kept in the data
directory (mode 0600), so our services and CLI authenticate without anyone typing a password.

`service` (read-write: migrations, sinks) and `analyst` (read-only, time and memory limits).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from llmops.secretfile import write_private_once

CREDENTIALS_FILE = "store-credentials.json"
SERVICE_USER = "default"  # clickhouse-connect's and curl users' default name
ANALYST_USER = "analyst"


class CredentialsError(RuntimeError):
    """The credentials file exists but cannot be used."""


@dataclass(frozen=True)
class StoreCredentials:
    service_user: str
    service_password: str
    analyst_user: str
    analyst_password: str


def credentials_path(data_dir: Path) -> Path:
    return data_dir / CREDENTIALS_FILE


def load_credentials(data_dir: Path) -> StoreCredentials | None:
    """The store's accounts, or None while no store has started on `data_dir`."""
    path = credentials_path(data_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return StoreCredentials(**{k: str(raw[k]) for k in StoreCredentials.__annotations__})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(f"{path} is unreadable or malformed ({exc}); delete it") from exc


def load_or_create_credentials(data_dir: Path) -> StoreCredentials:
    """The accounts of `data_dir`, generated (once, even with concurrent callers) if new."""
    found = load_credentials(data_dir)
    if found is not None:
        return found
    fresh = StoreCredentials(
        service_user=SERVICE_USER,
        service_password=secrets.token_urlsafe(24),
        analyst_user=ANALYST_USER,
        analyst_password=secrets.token_urlsafe(24),
    )
    # 0600 from the first byte; a concurrent first start keeps whichever file landed first.
    write_private_once(credentials_path(data_dir), json.dumps(asdict(fresh)))
    created = load_credentials(data_dir)
    assert created is not None
    return created
