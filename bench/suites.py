"""Suite throughput: cases/s of `llmops eval run`'s runner end to end through the tiny model.

Real parts: Tansu on a free port; the router and one pool in this process (as
tests/integration/platform.py runs them: the real consumer loops, producers and engines); the
suite runner sending each case x repeat as a PromptRequest through the SDK and judging the
answer with the cheap detectors (PII, refusal) and the text assertions. Two pools:
- `tiny`: the transformers engine on the tiny random Llama (the engine tests' model), seeded
  sampling at temperature 0.7, `--tokens` output tokens per case: the number reported;
- `echo`: the fake engine (no model cost), which shows the platform's and the runner's own
  ceiling.
A case x repeat counts when its reply is judged; the first run of each pool (the consumer
groups forming, the first batches) is a warm-up and not counted. Each suite runs `--rounds`
times (the same seeds: the same answers); the median round is reported. On a shared 2-core
machine the tiny model's rounds vary several-fold with the other load (printed per round).

    .venv/bin/python bench/suites.py [--cases 64] [--repeat 4] [--tokens 16] [--concurrency 32]
                                     [--rounds 5]

Ends with `RESULT suite_cases_per_s=...` (the tiny model's median).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The router takes only signed heartbeats: a deployment key of this run for every service.
os.environ["LLMOPS_SIGNING_KEY"] = secrets.token_hex(32)
os.environ["LLMOPS_SIGNING_KEY_ID"] = "k1"

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from llmops.cli.evals import platform_probes
from llmops.config import FakePool, TransformersPool
from llmops.evals.runner import PromptTarget, RunConfig, SuiteRunner
from llmops.evals.suite import Suite, suite_from_data
from llmops.local.broker import start_broker
from llmops.local.procs import free_port
from llmops.prompts.registry import prompt_set_from_data
from llmops.sdk import LLMOpsClient
from services.inference.engines.fake import FakeEngine
from services.inference.engines.transformers_engine import (
    TransformersEngine,
    TransformersEngineConfig,
)
from services.inference.models import build_tiny_model, build_tiny_tokenizer
from tests.integration.platform import running_platform

console = Console()
TINY_CONFIG = TransformersEngineConfig(
    max_model_len=512, max_batch_tokens=256, max_batch_requests=16, kv_cache_tokens=8192
)
TOPICS = ("rivers", "lakes", "brokers", "streams", "prompts", "tests", "models", "queues")


def prompts() -> dict[str, Any]:
    return {
        "prompts": [
            {
                "name": name,
                "versions": [
                    {
                        "version": 1,
                        "labels": ["production"],
                        "model": model,
                        "messages": [
                            {"role": "system", "content": "You answer in one sentence."},
                            {
                                "role": "user",
                                "content": "Tell me about {{ topic }} (case {{ n }}).",
                            },
                        ],
                    }
                ],
            }
            for name, model in (("bench-tiny", "tiny-random"), ("bench-echo", "echo"))
        ]
    }


def suite(name: str, cases: int, tokens: int) -> Suite:
    return suite_from_data(
        {
            "name": f"bench-{name}",
            "prompt": f"bench-{name}@production",
            "threshold": 0.5,
            "sampling": {"temperature": 0.7, "max_tokens": tokens},
            "defaults": {
                "assertions": [
                    {"type": "not_refusal"},
                    {"type": "no_pii"},
                    {"type": "length", "min_chars": 1, "max_chars": 10_000},
                ]
            },
            "cases": [
                {
                    "id": f"case-{i}",
                    "variables": {"topic": TOPICS[i % len(TOPICS)], "n": i},
                    "assertions": [{"type": "regex", "pattern": "(?i)\\b(the|a)\\b"}],
                }
                for i in range(cases)
            ],
        }
    )


async def measure(
    client: LLMOpsClient, s: Suite, repeat: int, concurrency: int
) -> tuple[int, float, float, int]:
    """(case x repeat results, seconds, the share of cases passed, output tokens)."""
    runner = SuiteRunner(
        client,
        s,
        RunConfig(repeat=repeat, concurrency=concurrency, timeout_s=300),
        platform_probes(s, None),
    )
    started = time.perf_counter()
    [run] = await runner.run([PromptTarget.parse(s.prompt)])
    wall = time.perf_counter() - started
    errors = [x.scored.error for x in run.samples if x.scored.error]
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    tokens = sum(x.result.output_tokens or 0 for x in run.samples)
    return len(run.samples), wall, run.summary.pass_rate, tokens


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="llmops-bench-suites-")) / "tansu.log"
    broker = start_broker("127.0.0.1", port, log)
    bootstrap = f"127.0.0.1:{port}"
    suffix = uuid.uuid4().hex[:6]
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    tiny = TransformersPool(name=f"tiny-{suffix}", model="tiny-random", capacity=16)
    echo = FakePool(name=f"echo-{suffix}", model="echo", capacity=64)
    engines: dict[str, Any] = {
        tiny.name: TransformersEngine("tiny-random", lambda: (model, tokenizer), TINY_CONFIG),
        echo.name: FakeEngine(model="echo"),
    }
    rows = []
    try:
        async with (
            running_platform(bootstrap, [tiny, echo], engines, prompt_set_from_data(prompts())),
            LLMOpsClient(bootstrap, app="bench-suites") as client,
        ):
            for name in ("tiny", "echo"):
                warm = suite(name, min(args.cases, 16), args.tokens)
                await measure(client, warm, 1, args.concurrency)
                s = suite(name, args.cases, args.tokens)
                rounds = []
                for _ in range(args.rounds):
                    n, wall, rate, tokens = await measure(client, s, args.repeat, args.concurrency)
                    rounds.append((n / wall, n, wall, rate, tokens))
                    console.print(
                        f"{name}: {n} cases x repeats in {wall:.2f} s = {n / wall:.1f}/s, "
                        f"{tokens / wall:.0f} output tok/s, load {os.getloadavg()[0]:.1f}"
                    )
                per_s, n, wall, rate, tokens = sorted(rounds)[len(rounds) // 2]  # the median
                rows.append((name, n, wall, per_s, rate, tokens))
    finally:
        broker.terminate()
        broker.wait(5)
    table = Table(title="suite throughput, end to end (SDK -> Tansu -> router -> pool -> reply)")
    for column in ("pool", "results", "seconds", "cases/s", "output tok/s", "pass rate"):
        table.add_column(column, justify="right")
    for name, n, wall, rate, passed, tokens in rows:
        table.add_row(
            name, str(n), f"{wall:.2f}", f"{rate:.1f}", f"{tokens / wall:.0f}", f"{passed:.0%}"
        )
    console.print(table)
    console.print(
        f"{args.cases} cases x {args.repeat} repeats, {args.tokens} output tokens each, "
        f"{args.concurrency} in flight; cheap detectors and text assertions on every answer; "
        f"the median of {args.rounds} rounds"
    )
    print(f"RESULT suite_cases_per_s={rows[0][3]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
