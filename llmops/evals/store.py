"""A suite run in ClickHouse (migration 017): one `eval_runs` row per prompt version run, one
`eval_results` row per case x repeat. Rows are built by pure functions and written as typed
Arrow tables, one insert per table, so an empty map or an all-NULL column keeps its type.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from llmops.evals.runner import Sample, VersionRun
from llmops.evals.scoring import Comparison
from llmops.evals.suite import Suite

MAX_OUTPUT_CHARS = 32_768
MAX_MESSAGE_CHARS = 1_000
MAX_ERROR_CHARS = 4_096
_UINT32 = 2**32 - 1

_TS = pa.timestamp("ms", tz="UTC")
RUN_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("suite", pa.string()),
        ("suite_hash", pa.string()),
        ("prompt_name", pa.string()),
        ("prompt_version", pa.uint32()),
        ("label", pa.string()),
        ("target", pa.string()),
        ("cases", pa.uint32()),
        ("passed_cases", pa.uint32()),
        ("flaky_cases", pa.uint32()),
        ("pass_rate", pa.float64()),
        ("mean_score", pa.float64()),
        ("threshold", pa.float64()),
        ("min_pass_rate", pa.float64()),
        ("passed", pa.uint8()),
        ("repeat", pa.uint16()),
        ("seed", pa.int64()),
        ("role", pa.string()),
        ("compared_with", pa.string()),
        ("mcnemar_p", pa.float64()),
        ("score_diff", pa.float64()),
        ("score_diff_low", pa.float64()),
        ("score_diff_high", pa.float64()),
        ("comparison", pa.string()),
        ("started_at", _TS),
        ("finished_at", _TS),
    ]
)
RESULT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("suite", pa.string()),
        ("case_id", pa.string()),
        ("repeat", pa.uint16()),
        ("seed", pa.int64()),
        ("prompt_name", pa.string()),
        ("prompt_version", pa.uint32()),
        ("label", pa.string()),
        ("request_id", pa.string()),
        ("model", pa.string()),
        ("pool", pa.string()),
        ("passed", pa.uint8()),
        ("score", pa.float64()),
        ("error", pa.string()),
        ("output", pa.string()),
        ("latency_ms", pa.float64()),
        ("input_tokens", pa.uint32()),
        ("output_tokens", pa.uint32()),
        ("cost_usd", pa.float64()),
        ("similarity", pa.float64()),
        ("signals", pa.map_(pa.string(), pa.float64())),
        ("check_types", pa.list_(pa.string())),
        ("check_passed", pa.list_(pa.uint8())),
        ("check_weights", pa.list_(pa.float64())),
        ("check_messages", pa.list_(pa.string())),
        ("ts", _TS),
    ]
)


@dataclass(frozen=True, slots=True)
class Pairing:
    """How a run relates to the other of a comparison."""

    role: str  # "candidate" or "baseline"
    other_run_id: str
    comparison: Comparison | None = None  # on the candidate's rows


def suite_hash(suite: Suite) -> str:
    """A short hash of the suite's content: which cases and assertions a row was judged by."""
    return hashlib.sha256(suite.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


def _finite(value: float | None, default: float = 0.0) -> float:
    return value if value is not None and math.isfinite(value) else default


def _cut(text: str, limit: int) -> str:
    # A lone surrogate cannot be sent as UTF-8: the store keeps "?" in its place.
    cut = text[:limit]
    return cut.encode("utf-8", "replace").decode("utf-8")


def run_rows(
    suite: Suite, run: VersionRun, seed: int, pairing: Pairing | None = None
) -> list[dict[str, Any]]:
    """The eval_runs rows of `run`: one per version that answered (0 when none did); each
    passes the gate only if the run did, all on that one version."""
    versions = run.versions or (0,)
    c = pairing.comparison if pairing is not None else None
    summary = run.summary
    return [
        {
            "run_id": run.run_id,
            "suite": suite.name,
            "suite_hash": suite_hash(suite),
            "prompt_name": run.target.name,
            "prompt_version": version,
            "label": run.target.label or "",
            "target": str(run.target),
            "cases": len(summary.cases),
            "passed_cases": summary.passed_cases,
            "flaky_cases": len(summary.flaky),
            "pass_rate": _finite(summary.pass_rate),
            "mean_score": _finite(summary.mean_score),
            "threshold": suite.threshold,
            "min_pass_rate": suite.min_pass_rate,
            "passed": 1 if run.passed else 0,
            "repeat": summary.k,
            "seed": seed,
            "role": pairing.role if pairing is not None else "",
            "compared_with": pairing.other_run_id if pairing is not None else "",
            "mcnemar_p": _finite(c.mcnemar_p, 1.0) if c is not None else 1.0,
            "score_diff": _finite(c.mean_score_diff) if c is not None else 0.0,
            "score_diff_low": _finite(c.diff_low) if c is not None else 0.0,
            "score_diff_high": _finite(c.diff_high) if c is not None else 0.0,
            "comparison": c.verdict if c is not None else "",
            "started_at": run.started_at,
            "finished_at": run.finished_at,
        }
        for version in versions
    ]


def result_row(suite: Suite, run: VersionRun, sample: Sample, ts: datetime) -> dict[str, Any]:
    r = sample.result
    checks = sample.scored.checks
    return {
        "run_id": run.run_id,
        "suite": suite.name,
        "case_id": sample.case_id,
        "repeat": sample.repeat,
        "seed": sample.seed,
        "prompt_name": run.target.name,
        "prompt_version": min(sample.prompt_version or 0, _UINT32),
        "label": run.target.label or "",
        "request_id": sample.request_id,
        "model": sample.model,
        "pool": sample.pool,
        "passed": 1 if sample.scored.passed else 0,
        "score": _finite(sample.scored.score),
        "error": _cut(sample.scored.error or "", MAX_ERROR_CHARS),
        "output": _cut(r.output, MAX_OUTPUT_CHARS),
        "latency_ms": _finite(r.latency_ms),
        "input_tokens": min(r.input_tokens or 0, _UINT32),
        "output_tokens": min(r.output_tokens or 0, _UINT32),
        "cost_usd": _finite(r.cost_usd),
        "similarity": r.similarity
        if r.similarity is not None and math.isfinite(r.similarity)
        else None,
        "signals": [(k[:256], v) for k, v in r.signals.items() if math.isfinite(v)],
        "check_types": [c.type for c in checks],
        "check_passed": [1 if c.passed else 0 for c in checks],
        "check_weights": [c.weight for c in checks],
        "check_messages": [_cut(c.message, MAX_MESSAGE_CHARS) for c in checks],
        "ts": ts,
    }


def _table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.table({f.name: pa.array([r[f.name] for r in rows], f.type) for f in schema}, schema)


def write_runs(
    client: Client,
    suite: Suite,
    runs: Sequence[tuple[VersionRun, Pairing | None]],
    seed: int,
) -> tuple[int, int]:
    """Every result, then the runs (a gate reading eval_runs finds the results already in);
    returns (result rows, run rows)."""
    results = [
        result_row(suite, run, sample, run.finished_at) for run, _ in runs for sample in run.samples
    ]
    heads = [row for run, pairing in runs for row in run_rows(suite, run, seed, pairing)]
    if results:
        client.insert_arrow("eval_results", _table(results, RESULT_SCHEMA))
    if heads:
        client.insert_arrow("eval_runs", _table(heads, RUN_SCHEMA))
    return len(results), len(heads)
