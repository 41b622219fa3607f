"""Expected failures of the CLI as one line each: what went wrong, and what to check.

A user's mistake (an unknown prompt, a bad option, bad SQL) or a platform that is not running
is not a bug: it gets one readable line and exit code 1; the traceback only with `--debug`.
"""

from __future__ import annotations

import re
import socket

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from kafka.errors import KafkaError as SyncKafkaError
from pydantic import ValidationError

from llmops.kafka.deadletter import describe_validation_error

# ClickHouse's own message inside the driver's wrapping ("... Code: 62. DB::Exception: ...").
_CLICKHOUSE_MESSAGE = re.compile(r"(Code: \d+\. DB::Exception: .*?)(?: \(version [^)]*\))?$")
MAX_LINE = 400


class Mistake(ValueError):
    """A usage mistake found by the CLI itself (exit code 2, like click's own)."""


def require_kafka(bootstrap_servers: str, timeout_s: float = 2.0) -> None:
    """Fail at once when no bootstrap server accepts a connection: the Kafka clients
    would retry for 30 s before saying so."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError):
            continue
    raise ConnectionError(
        f"cannot reach Kafka at {bootstrap_servers}; is the platform running (`llmops up`) "
        "and KAFKA_BOOTSTRAP_SERVERS right?"
    )


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def _clickhouse(exc: DatabaseError) -> str:
    text = str(exc)
    if isinstance(exc, OperationalError) and "DB::Exception" not in text:
        return (
            f"cannot reach ClickHouse ({_first_line(text)}); is the platform running "
            "(`llmops up`) and CLICKHOUSE_URL right?"
        )
    for line in text.splitlines():
        found = _CLICKHOUSE_MESSAGE.search(line.strip())
        if found:
            return "ClickHouse: " + _first_line(found.group(1))
    return "ClickHouse: " + _first_line(text)


def _kafka_unreachable(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError

    return isinstance(exc, SyncKafkaError | KafkaConnectionError | ConnectionError)


def describe(exc: BaseException) -> str | None:
    """One line for an expected failure; None for anything else (a bug: show it whole)."""
    from llmops.sdk import LLMOpsError, ReplyTimeout

    if isinstance(exc, Mistake | LLMOpsError | ReplyTimeout):
        return _first_line(str(exc))
    if isinstance(exc, ValidationError):
        return f"invalid request: {describe_validation_error(exc)}"
    if isinstance(exc, DatabaseError):
        return _clickhouse(exc)
    if isinstance(exc, ConnectionError) and "KAFKA_BOOTSTRAP_SERVERS" in str(exc):
        return _first_line(str(exc))  # the SDK's own message says it all
    if _kafka_unreachable(exc):
        return (
            f"cannot reach Kafka ({_first_line(str(exc)) or type(exc).__name__}); is the "
            "platform running (`llmops up`) and KAFKA_BOOTSTRAP_SERVERS right?"
        )
    if isinstance(exc, OSError):
        return _first_line(f"{type(exc).__name__}: {exc}")
    return None
