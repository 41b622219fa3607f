"""eval_runs / eval_results rows: one run row per version that answered, values bounded to
their columns, typed Arrow tables (an empty map keeps its type)."""

from __future__ import annotations

import math

from llmops.evals import store as S
from llmops.evals.assertions import Result
from llmops.evals.runner import Sample
from llmops.evals.scoring import compare
from llmops.evals.suite import suite_from_data
from tests.unit.evals.test_runner import SUITE, version_run


def test_one_run_row_per_version_and_the_gate() -> None:
    suite = suite_from_data(SUITE)
    [row] = S.run_rows(suite, version_run([3, 3]), seed=7)
    assert (row["prompt_name"], row["prompt_version"], row["label"], row["passed"]) == (
        "p",
        3,
        "production",
        1,
    )
    assert (row["cases"], row["passed_cases"], row["repeat"], row["seed"]) == (1, 1, 2, 7)
    moved = S.run_rows(suite, version_run([3, 4]), seed=0)
    assert [(r["prompt_version"], r["passed"]) for r in moved] == [(3, 0), (4, 0)]
    [none] = S.run_rows(suite, version_run([None]), seed=0)
    assert (none["prompt_version"], none["passed"]) == (0, 0)


def test_pairing_is_recorded() -> None:
    suite = suite_from_data(SUITE)
    a, b = version_run([1, 1]), version_run([2, 2], passed=False)
    comparison = compare(a.scored, b.scored)
    [row] = S.run_rows(suite, b, 0, S.Pairing("candidate", "other", comparison))
    assert row["role"] == "candidate" and row["compared_with"] == "other"
    assert row["mcnemar_p"] == comparison.mcnemar_p and row["comparison"] == comparison.verdict


def test_result_rows_are_bounded_and_typed() -> None:
    suite = suite_from_data(SUITE)
    run = version_run([1])
    sample = run.samples[0]
    hostile = Result(
        "\ud800" + "x" * (S.MAX_OUTPUT_CHARS + 10),
        latency_ms=math.nan,
        input_tokens=2**40,
        similarity=math.inf,
        signals={"pii_output": 0.0, "bad": math.nan},
    )
    wild = Sample(sample.target, "a", 0, 0, "r", hostile, sample.scored, 2**40, "m", "pool")
    row = S.result_row(suite, run, wild, run.finished_at)
    assert len(row["output"]) == S.MAX_OUTPUT_CHARS and row["output"][0] == "?"
    assert row["latency_ms"] == 0.0 and row["similarity"] is None
    assert row["input_tokens"] == 2**32 - 1 and row["prompt_version"] == 2**32 - 1
    assert row["signals"] == [("pii_output", 0.0)]
    plain = S.result_row(suite, run, sample, run.finished_at)
    table = S._table([plain, row], S.RESULT_SCHEMA)
    assert table.schema == S.RESULT_SCHEMA and table.num_rows == 2
    assert table.column("signals").to_pylist()[0] == []
    heads = S._table(S.run_rows(suite, run, 0), S.RUN_SCHEMA)
    assert heads.schema == S.RUN_SCHEMA


def test_suite_hash_follows_the_content() -> None:
    a = suite_from_data(SUITE)
    b = suite_from_data({**SUITE, "threshold": 0.5})
    assert S.suite_hash(a) == S.suite_hash(suite_from_data(SUITE)) != S.suite_hash(b)
