"""Where every command writes: one console for output, one for the error lines."""

from __future__ import annotations

import sys

from rich.console import Console

# Piped output gets a width that fits the summary tables instead of 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
error_console = Console(stderr=True)
