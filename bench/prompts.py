"""The prompt engineering pipeline's three measurements, each in its own process, one RESULT.

- bench/labels.py: label move published -> the first request served with the new version,
  3 router replicas (p50/p99 in ms);
- bench/report.py: `llmops experiments report` on 1M responses in ClickHouse (chDB), seconds;
- bench/suites.py: suite throughput through the tiny model end to end (cases/s).

    .venv/bin/python bench/prompts.py     (or: make bench-prompts)

Each script prints its own tables; the last line combines their RESULT lines as
`RESULT label_propagation_p99_ms=... report_1m_s=... suite_cases_per_s=...`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rich.console import Console

HERE = Path(__file__).parent
PARTS = ("labels.py", "report.py", "suites.py")
WANTED = ("label_propagation_p99_ms", "report_1m_s", "suite_cases_per_s")


def results_of(script: str, console: Console) -> dict[str, str]:
    """Runs one bench script (its output passes through) and parses its RESULT line."""
    console.rule(f"bench/{script}")
    proc = subprocess.run(
        [sys.executable, str(HERE / script)], capture_output=True, text=True, check=False
    )
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"bench/{script} failed (exit {proc.returncode})")
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            for pair in line.split()[1:]:
                name, _, value = pair.partition("=")
                found[name] = value
    return found


def main() -> None:
    console = Console()
    results: dict[str, str] = {}
    for script in PARTS:
        results.update(results_of(script, console))
    missing = [name for name in WANTED if name not in results]
    if missing:
        raise SystemExit(f"no RESULT for {', '.join(missing)}")
    print("RESULT " + " ".join(f"{name}={results[name]}" for name in WANTED))


if __name__ == "__main__":
    main()
