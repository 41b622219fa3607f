"""Suites end to end through the real broker, router and pools (in process), their results in
the real ClickHouse store: passing, failing and flaky cases, the tiny model's seeded samples,
the rubric graded by a judge pool, and the paired comparison of two versions."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmops.cli.evals import platform_probes
from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.evals.junit import junit_xml_many
from llmops.evals.runner import Probes, PromptTarget, RunConfig, SuiteRunner, VersionRun
from llmops.evals.scoring import compare
from llmops.evals.store import Pairing, write_runs
from llmops.evals.suite import Suite, suite_from_data
from llmops.sdk import LLMOpsClient
from tests.integration.evals.kit import JUDGE, pools_and_engines, prompt_set
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration

GREETER: dict[str, Any] = {
    "name": "greeter-gate",
    "prompt": "greeter@production",
    "sampling": {"max_tokens": 2},
    "defaults": {"assertions": [{"type": "no_pii"}, {"type": "not_refusal"}]},
    "cases": [
        {
            "id": "greets-ada",
            "variables": {"name": "Ada"},
            "assertions": [
                {"type": "contains", "value": "Ada"},
                {"type": "rubric", "criteria": "The answer greets the user.", "model": JUDGE},
            ],
        },
        {
            "id": "names-zed",
            "variables": {"name": "Bob"},
            "assertions": [{"type": "contains", "value": "Zed"}],
        },
        # seed 0 answers "Hello Cy", seed 1 "Cy Hello": the greeting comes first on even seeds
        {
            "id": "greeting-first",
            "variables": {"name": "Cy"},
            "assertions": [{"type": "regex", "pattern": "^Hello"}],
        },
    ],
}


@pytest.fixture(scope="module")
async def client(bootstrap: str) -> AsyncIterator[LLMOpsClient]:
    pools, engines = pools_and_engines(uuid.uuid4().hex[:6])
    async with (
        running_platform(bootstrap, pools, engines, prompt_set()),  # type: ignore[arg-type]
        LLMOpsClient(bootstrap, app="eval-test") as sdk,
    ):
        yield sdk


@pytest.fixture(scope="module")
def store(store_url: str) -> str:
    url = f"{store_url}/evals_{uuid.uuid4().hex[:8]}"
    client = ensure_database(url)
    apply_migrations(client)
    client.close()
    return url


async def run(
    client: LLMOpsClient, suite: Suite, targets: list[str], **config: Any
) -> list[VersionRun]:
    runner = SuiteRunner(
        client, suite, RunConfig(timeout_s=60, **config), platform_probes(suite, None)
    )
    return await runner.run([PromptTarget.parse(t) for t in targets])


async def test_passing_failing_and_flaky_cases(client: LLMOpsClient, store: str) -> None:
    suite = suite_from_data(GREETER)
    [result] = await run(client, suite, ["greeter@production"], repeat=2)
    cases = {c.case_id: c for c in result.summary.cases}
    assert cases["greets-ada"].passed and cases["greets-ada"].passes == 2
    assert not cases["names-zed"].passed and cases["names-zed"].passes == 0
    flaky = cases["greeting-first"]
    assert flaky.flaky and flaky.passes == 1 and not flaky.passed
    assert (flaky.pass_at_k, flaky.pass_hat_k) == (1.0, 0.0)
    assert result.summary.flaky == ("greeting-first",)
    assert not result.passed and result.summary.passed_cases == 1
    # @production was resolved by the router: the version that ran is recorded
    assert result.versions == (1,)
    by_key = {(s.case_id, s.repeat): s for s in result.samples}
    assert by_key[("greeting-first", 0)].result.output == "Hello Cy"
    assert by_key[("greeting-first", 1)].result.output == "Cy Hello"
    assert {s.seed for s in result.samples} == {0, 1}
    assert len({s.request_id for s in result.samples}) == 6  # never the same request twice
    graded = by_key[("greets-ada", 0)].scored.checks
    rubric = next(c for c in graded if c.type == "rubric")
    assert rubric.passed and "score 5" in rubric.message
    signals = by_key[("greets-ada", 0)].result.signals
    assert signals["pii_output"] == 0 and signals["refusal"] == 0

    db = connect(store)
    try:
        assert write_runs(db, suite, [(result, None)], 0) == (6, 1)
        rows = db.query(
            "SELECT case_id, repeat, seed, passed, prompt_version, output, check_types "
            "FROM eval_results FINAL WHERE run_id = {r:String} ORDER BY case_id, repeat",
            parameters={"r": result.run_id},
        ).result_rows
        head = db.query(
            "SELECT prompt_name, prompt_version, label, cases, passed_cases, flaky_cases, passed,"
            " repeat FROM eval_runs FINAL WHERE run_id = {r:String}",
            parameters={"r": result.run_id},
        ).result_rows
    finally:
        db.close()
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("greeting-first", 0, 0, 1, 1),
        ("greeting-first", 1, 1, 0, 1),
        ("greets-ada", 0, 0, 1, 1),
        ("greets-ada", 1, 1, 1, 1),
        ("names-zed", 0, 0, 0, 1),
        ("names-zed", 1, 1, 0, 1),
    ]
    assert rows[0][5] == "Hello Cy"
    assert rows[2][6] == ["no_pii", "not_refusal", "contains", "rubric"]
    assert head == [("greeter", 1, "production", 3, 1, 1, 0, 2)]


async def test_a_suite_that_passes_and_its_junit(client: LLMOpsClient) -> None:
    data = {**GREETER, "cases": GREETER["cases"][:1]}
    suite = suite_from_data(data)
    [result] = await run(client, suite, ["greeter@1"], repeat=3)
    assert result.passed and result.summary.pass_rate == 1.0
    root = ET.fromstring(junit_xml_many([("gate", result.summary, result.scored)]))
    [testsuite] = root.findall("testsuite")
    assert testsuite.get("tests") == "3" and testsuite.get("failures") == "0"
    assert [c.get("name") for c in testsuite.findall("testcase")] == [
        f"greets-ada [repeat {r}]" for r in range(3)
    ]


async def test_compare_gives_the_paired_verdict(client: LLMOpsClient, store: str) -> None:
    """v2 says "Bye": it loses the greeting case on both repeats and the rubric; the same
    cases, repeats and seeds are paired."""
    cases = [
        {**GREETER["cases"][0], "id": f"greets-{i}", "variables": {"name": f"N{i}"}}
        for i in range(4)
    ]
    cases = [{**c, "assertions": [{"type": "regex", "pattern": "Hello"}]} for c in cases]
    suite = suite_from_data({**GREETER, "cases": cases})
    candidate, baseline = await run(
        client, suite, ["greeter@candidate", "greeter@production"], repeat=2
    )
    assert candidate.versions == (2,) and baseline.versions == (1,)
    assert baseline.passed and not candidate.passed
    seeds = {(s.case_id, s.repeat, s.seed) for s in candidate.samples}
    assert seeds == {(s.case_id, s.repeat, s.seed) for s in baseline.samples}
    result = compare(baseline.scored, candidate.scored)
    assert (result.pairs, result.only_a_passes, result.only_b_passes) == (8, 8, 0)
    assert result.mcnemar_p == pytest.approx(2 * 0.5**8)
    assert result.verdict.startswith("B passes fewer cases than A")
    assert result.diff_high < 0

    db = connect(store)
    try:
        write_runs(
            db,
            suite,
            [
                (candidate, Pairing("candidate", baseline.run_id, result)),
                (baseline, Pairing("baseline", candidate.run_id)),
            ],
            0,
        )
        rows = db.query(
            "SELECT prompt_version, role, compared_with, passed, mcnemar_p FROM eval_runs FINAL "
            "WHERE run_id IN ({a:String}, {b:String}) ORDER BY prompt_version",
            parameters={"a": candidate.run_id, "b": baseline.run_id},
        ).result_rows
    finally:
        db.close()
    assert rows == [
        (1, "baseline", candidate.run_id, 1, 1.0),
        (2, "candidate", baseline.run_id, 0, pytest.approx(2 * 0.5**8)),
    ]


async def test_the_tiny_model_samples_each_repeat_anew(client: LLMOpsClient) -> None:
    """Real generation: each repeat is its own seeded sample (so the answers differ), and a
    case asserting what the random model never says fails on every repeat."""
    suite = suite_from_data(
        {
            "name": "tiny",
            "prompt": "tiny-talk@production",
            "sampling": {"temperature": 1.0, "max_tokens": 12},
            "cases": [
                {
                    "id": "answers",
                    "variables": {"topic": "rivers"},
                    "assertions": [{"type": "length", "min_chars": 1}, {"type": "no_pii"}],
                },
                {
                    "id": "impossible",
                    "variables": {"topic": "lakes"},
                    "assertions": [{"type": "contains", "value": "never-said-zq"}],
                },
            ],
        }
    )
    [result] = await run(client, suite, ["tiny-talk@production"], repeat=3)
    cases = {c.case_id: c for c in result.summary.cases}
    assert cases["answers"].passed and cases["answers"].passes == 3
    assert cases["impossible"].passes == 0
    assert result.versions == (3,)
    answers = [s for s in result.samples if s.case_id == "answers"]
    assert {s.model for s in answers} == {"tiny-random"}
    assert len({s.result.output for s in answers}) > 1  # three seeds, not one cached answer
    assert all(s.result.output_tokens for s in answers)


async def test_platform_errors_fail_the_case(client: LLMOpsClient) -> None:
    suite = suite_from_data({**GREETER, "prompt": "nobody@production"})
    [result] = await run(client, suite, ["nobody@production"])
    assert not result.passed and result.versions == ()
    assert all(s.scored.error and "unknown prompt" in s.scored.error for s in result.samples)


async def test_similarity_to_the_reference_by_embeddings(client: LLMOpsClient) -> None:
    """The MiniLM encoder (the metrics worker's embedding tier) measures the similarity."""
    similar = {"type": "similarity", "min": 0.8}
    suite = suite_from_data(
        {
            **GREETER,
            "cases": [
                {
                    "id": "same",
                    "variables": {"name": "Ada"},
                    "reference": "Hello Ada",
                    "assertions": [similar],
                },
                {
                    "id": "other",
                    "variables": {"name": "Ada"},
                    "reference": "Quarterly tax filing deadlines for small firms",
                    "assertions": [similar],
                },
            ],
        }
    )
    [result] = await run(client, suite, ["greeter@1"])
    by_case = {s.case_id: s for s in result.samples}
    same, other = by_case["same"].result.similarity, by_case["other"].result.similarity
    assert same is not None and other is not None
    assert same > 0.99 and other < 0.5
    assert by_case["same"].scored.passed and not by_case["other"].scored.passed


async def test_a_flaky_case_on_the_tiny_model(client: LLMOpsClient) -> None:
    """A seed is a sample: the same seed gives the same answer again, another seed another.
    So a case expecting exactly the answer of seed 0 passes on repeat 0 only: flaky, named,
    pass@3 = 1 and pass^3 = 0. One request at a time, so every answer is computed alone."""
    base = {
        "name": "tiny-flaky",
        "prompt": "tiny-talk@production",
        "sampling": {"temperature": 1.0, "max_tokens": 12},
    }
    case = {"id": "exact", "variables": {"topic": "deltas"}}
    probe = suite_from_data(
        {**base, "cases": [{**case, "assertions": [{"type": "length", "min_chars": 0}]}]}
    )
    [first] = await run(client, probe, ["tiny-talk@production"], repeat=3, concurrency=1)
    answers = [s.result.output for s in sorted(first.samples, key=lambda s: s.repeat)]
    assert len(set(answers)) == 3  # three seeds, three samples
    exact = {"type": "equals", "value": answers[0], "strip": False}
    suite = suite_from_data({**base, "cases": [{**case, "assertions": [exact]}]})
    [result] = await run(client, suite, ["tiny-talk@production"], repeat=3, concurrency=1)
    [summary] = result.summary.cases
    assert (summary.passes, summary.flaky, summary.passed) == (1, True, False)
    assert (summary.pass_at_k, summary.pass_hat_k) == (1.0, 0.0)
    assert result.summary.flaky == ("exact",)
    assert [s.scored.passed for s in sorted(result.samples, key=lambda s: s.repeat)] == [
        True,
        False,
        False,
    ]


class BrokenGrader:
    def messages(self, *args: object) -> list[Any]:
        raise RuntimeError("grader bug")

    def parse(self, text: str) -> Any:
        raise AssertionError("never called")


def broken_signals(prompt: str, output: str, context: str | None) -> dict[str, float]:
    raise ZeroDivisionError("detector bug")


async def test_a_broken_probe_fails_its_assertions_only(client: LLMOpsClient) -> None:
    suite = suite_from_data(GREETER)
    probes = Probes(signals=broken_signals, grader=BrokenGrader())
    runner = SuiteRunner(client, suite, RunConfig(timeout_s=60), probes)
    [result] = await runner.run([PromptTarget.parse("greeter@1")])
    sample = next(s for s in result.samples if s.case_id == "greets-ada")
    checks = {c.type: c for c in sample.scored.checks}
    assert checks["contains"].passed  # the text was still judged
    assert not checks["no_pii"].passed and "not measured" in checks["no_pii"].message
    assert not checks["rubric"].passed and "grader bug" in checks["rubric"].message
