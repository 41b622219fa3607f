"""Who may do what on the store: two accounts (the read-write service user, the read-only
analyst), checked in constant time, and the limits an analyst's queries run under."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from llmops.local.clickhouse_server.protocol import (
    AUTHENTICATION_FAILED,
    Credentials,
    ProtocolError,
)

SETTING_CONSTRAINT_VIOLATION = 452
READONLY = 164


class Role(Enum):
    SERVICE = "service"  # DDL, inserts, queries: what our services and migrations need
    ANALYST = "analyst"  # SELECT only, under time and memory ceilings


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    role: Role


@dataclass(frozen=True)
class AnalystLimits:
    """Ceilings applied to every analyst query; a request may ask for less, never more."""

    max_execution_time: int = 60
    max_memory_usage: int = 2 << 30

    def settings(self, requested: Mapping[str, str]) -> dict[str, str]:
        """The analyst's URL settings with the ceilings enforced: a value above one is refused
        as ClickHouse's settings constraints refuse it; one not asked for is the ceiling."""
        chosen = dict(requested)
        for name, ceiling in (
            ("max_execution_time", self.max_execution_time),
            ("max_memory_usage", self.max_memory_usage),
        ):
            value = chosen.get(name)
            if value is None:
                chosen[name] = str(ceiling)
                continue
            try:
                number = float(value)
            except ValueError:
                raise ProtocolError(
                    SETTING_CONSTRAINT_VIOLATION, f"Setting {name} must be a number"
                ) from None
            # 0 means "no limit" to ClickHouse: that is above any ceiling
            if number <= 0 or number > ceiling:
                raise ProtocolError(
                    SETTING_CONSTRAINT_VIOLATION,
                    f"Setting {name} shouldn't be greater than {ceiling} (or 0) for this user",
                )
        if "readonly" in chosen:
            raise ProtocolError(READONLY, "Cannot modify 'readonly' setting in readonly mode")
        return chosen


@dataclass(frozen=True)
class Accounts:
    accounts: tuple[Account, ...]
    limits: AnalystLimits = field(default_factory=AnalystLimits)

    def check(self, given: Credentials) -> Account:
        """The account `given` logs in to; ClickHouse's AUTHENTICATION_FAILED otherwise.
        Every account is compared, whatever matches, so timing tells nothing."""
        found: Account | None = None
        for account in self.accounts:
            same_user = hmac.compare_digest(given.user.encode(), account.user.encode())
            same_password = hmac.compare_digest(given.password.encode(), account.password.encode())
            if same_user and same_password:
                found = account
        if found is None:
            raise ProtocolError(
                AUTHENTICATION_FAILED,
                f"{given.user}: Authentication failed: password is incorrect, "
                "or there is no user with such name.",
            )
        return found
