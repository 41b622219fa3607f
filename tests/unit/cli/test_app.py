"""The `llmops` app: every command registered and its help rendered; an expected failure is one
line and an exit code, an unexpected one names its type; --debug shows the traceback."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from llmops.cli import query
from llmops.cli.app import QUIET_LOGGERS, app
from llmops.cli.errors import Mistake
from llmops.config import Settings

COMMANDS = ("up", "demo", "send", "query", "migrate", "trace", "pools", "topics")


def one_error_line(args: list[str], code: int) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_every_command_is_listed_in_order() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[1] for line in result.output.splitlines() if line.startswith("│ ")]
    assert [name for name in listed if name in COMMANDS] == list(COMMANDS)
    assert "--debug" in result.output


def test_no_command_shows_the_help() -> None:
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2 and "Usage:" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_renders(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], prog_name="llmops")
    assert result.exit_code == 0, result.output
    assert f"Usage: llmops {command} [OPTIONS]" in result.output


def test_send_needs_a_text_or_a_prompt_not_both() -> None:
    wanted = "error: give a message TEXT or --prompt NAME[@VERSION|@LABEL] (one of them)"
    assert one_error_line(["send"], code=2) == wanted
    assert one_error_line(["send", "hi", "--prompt", "p"], code=2) == wanted


def test_var_without_equals_is_a_usage_mistake() -> None:
    line = one_error_line(["send", "--prompt", "p", "--var", "product"], code=2)
    assert line == "error: --var 'product': give it as NAME=VALUE"


def fail_with(exc: Exception) -> object:
    def settings() -> Settings:
        raise exc

    return settings


def test_an_unexpected_failure_names_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query, "get_settings", fail_with(RuntimeError("boom")))
    line = one_error_line(["query", "SELECT 1"], code=1)
    assert line == "error: unexpected RuntimeError: boom (`llmops --debug ...` shows where)"


def test_debug_lets_the_exception_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query, "get_settings", fail_with(RuntimeError("boom")))
    result = CliRunner().invoke(app, ["--debug", "query", "SELECT 1"])
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "boom"


def test_client_library_logs_are_quiet_during_a_command_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []

    def settings() -> Settings:
        seen.extend(logging.getLogger(name).level for name in QUIET_LOGGERS)
        raise Mistake("stop here")

    monkeypatch.setattr(query, "get_settings", settings)
    before = [logging.getLogger(name).level for name in QUIET_LOGGERS]
    assert one_error_line(["query", "SELECT 1"], code=2) == "error: stop here"
    assert seen == [logging.CRITICAL] * len(QUIET_LOGGERS)
    assert [logging.getLogger(name).level for name in QUIET_LOGGERS] == before
    seen.clear()
    CliRunner().invoke(app, ["--debug", "query", "SELECT 1"])
    assert seen == before  # --debug: the libraries log as configured
