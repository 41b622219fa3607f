"""`llmops`: run the platform, send traffic, query metrics, inspect topics."""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from llmops.cli import alerts, evals, pools, query, report, send, stack, topics, traces
from llmops.cli import experiments as experiment_commands
from llmops.cli import prompts as prompt_commands
from llmops.cli.console import error_console
from llmops.cli.errors import Mistake, describe

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Client libraries that log a connection failure before raising it: the error line says it.
QUIET_LOGGERS = ("clickhouse_connect", "kafka", "aiokafka")


class _OneLineErrors(TyperGroup):
    """Every command's expected failures as one line on stderr and exit code 1 (2 for a usage
    mistake); the traceback only with `llmops --debug ...`."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context (not public)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # typer's own ways out
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            line = describe(exc)
            if line is None:
                line = f"unexpected {type(exc).__name__}: {exc} (`llmops --debug ...` shows where)"
            error_console.print(f"[red]error[/]: {escape(line)}", soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, Mistake) else 1) from None


app = typer.Typer(
    cls=_OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    help=__doc__,
    pretty_exceptions_enable=False,
)
# Each group's commands join the top level (added without a name: no `llmops <group> ...`),
# listed in this order by `llmops --help`.
for group in (stack, send, query, report, traces, alerts, pools, topics):
    app.add_typer(group.commands)
# Groups with commands of their own: `llmops eval run ...`.
app.add_typer(evals.commands, name="eval")
app.add_typer(prompt_commands.commands, name="prompts")
app.add_typer(experiment_commands.commands, name="experiments")


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="show the traceback and library logs of a failure")
    ] = False,
) -> None:
    """`llmops`: run the platform, send traffic, query metrics, inspect topics."""
    if not debug:
        loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)

        def restore() -> None:  # for callers that run commands in process (tests)
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)

        ctx.call_on_close(restore)
