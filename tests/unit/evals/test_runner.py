"""The runner's pure parts: prompt references, the sampling and seeds it asks for, the gate
over the versions that answered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llmops.cli import evals as cli
from llmops.evals import runner as R
from llmops.evals.assertions import Check, Result
from llmops.evals.runner import PromptTarget, RunConfig, Sample, TargetError, VersionRun
from llmops.evals.scoring import Scored, summarize
from llmops.evals.suite import suite_from_data

SUITE = {
    "name": "s",
    "prompt": "p@production",
    "cases": [{"id": "a", "assertions": [{"type": "contains", "value": "x"}]}],
}


def test_targets_parse() -> None:
    assert PromptTarget.parse("support@production") == PromptTarget("support", label="production")
    assert PromptTarget.parse("support@12") == PromptTarget("support", version=12)
    assert str(PromptTarget.parse("a.b/c@v2-rc")) == "a.b/c@v2-rc"
    assert str(PromptTarget.parse("p@3")) == "p@3"


@pytest.mark.parametrize(
    "text",
    ["p", "@1", "p@", "p@1@2", "p q@1", "p@0", f"p@{2**32}", "p@x y", "p" * 129 + "@1", "p@\u00e9"],
)
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(TargetError, match=r"NAME@VERSION|letters|a version"):
        PromptTarget.parse(text)


def test_sampling_and_seeds() -> None:
    suite = suite_from_data(SUITE)
    assert RunConfig().sampling(suite) == {"temperature": 0.0}
    assert RunConfig(repeat=3).sampling(suite) == {"temperature": R.REPEAT_TEMPERATURE}
    assert RunConfig(repeat=3, temperature=0.2, max_tokens=9).sampling(suite) == {
        "temperature": 0.2,
        "max_tokens": 9,
    }
    sampled = suite_from_data({**SUITE, "sampling": {"temperature": 1.5, "top_p": 0.9}})
    assert RunConfig(repeat=2).sampling(sampled) == {"temperature": 1.5, "top_p": 0.9}
    config = RunConfig(repeat=4, seed=100)
    assert [config.seed_of(r) for r in range(4)] == [100, 101, 102, 103]


@pytest.mark.parametrize(
    "bad", [{"repeat": 0}, {"repeat": R.MAX_REPEAT + 1}, {"concurrency": 0}, {"timeout_s": 0}]
)
def test_run_config_bounds(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RunConfig(**bad)  # type: ignore[arg-type]


def test_the_cli_checks_the_runners_bounds() -> None:
    assert (cli.MAX_REPEAT, cli.MAX_CONCURRENCY) == (R.MAX_REPEAT, R.MAX_CONCURRENCY)
    assert cli.MAX_SEED + R.MAX_REPEAT < 2**63  # a seed plus a repeat fits the int64 column
    from schemas.requests import MAX_OUTPUT_TOKENS

    assert cli.MAX_TOKENS == MAX_OUTPUT_TOKENS


def version_run(versions: list[int | None], passed: bool = True) -> VersionRun:
    suite = suite_from_data(SUITE)
    target = PromptTarget("p", label="production")
    checks = (Check("contains", passed, 1.0, ""),)
    samples = [
        Sample(
            target,
            "a",
            r,
            r,
            f"req{r}",
            Result("x"),
            Scored("a", r, 1.0, passed, checks),
            v,
            "m",
            "pool",
        )
        for r, v in enumerate(versions)
    ]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return VersionRun(
        target, "run", samples, summarize(suite, [s.scored for s in samples]), now, now
    )


def test_the_gate_needs_one_version() -> None:
    assert version_run([1, 1]).passed
    assert not version_run([1, 1], passed=False).passed
    moved = version_run([1, 2])  # the label moved during the run
    assert moved.summary.passed and not moved.passed and moved.versions == (1, 2)
    nothing = version_run([None])  # no version answered
    assert nothing.versions == () and not nothing.passed


def test_variables_are_sent_as_text() -> None:
    assert [R._as_text(v) for v in ("a", 3, 2.5, True, False)] == ["a", "3", "2.5", "true", "false"]
