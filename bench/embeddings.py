"""How many exchanges/s the embedding tier (minilm_embeddings) judges, and where the time goes.

Every exchange is in the sample (rate 1): a question line, a ~1 KB output (about ten
sentences) and a ~1 KB context, all different (seeded), fed to the driver in batches of
`--batch` (64, as the worker's sink would hand them over). The clock covers detect() only:
the model is loaded and warmed first. Time is split into sentence splitting and planning,
tokenizing, the model's forward passes and the rest (pooling copies, cosines, signals).

    .venv/bin/python bench/embeddings.py [--exchanges 640] [--batch 64] [--threads N]
        [--variants full,no_context,short_output,repeated_context]

Variants (each on the same machine, same run):
- full: as above (the target: >= 500 exchanges/s);
- no_context: the same outputs without a context (no grounding: output and question only);
- short_output: the output cut to its first two sentences, with the context;
- repeated_context: every exchange of a batch shares one context (a RAG app answering
  several questions on one document): the driver encodes a repeated sentence once.
Also the raw rate of the model through sentence-transformers' own encode (sentences/s).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script: the repository's packages come from the checkout itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from streams.detectors import embeddings
from streams.detectors.base import Exchange
from streams.detectors.embeddings import MiniLMEmbeddingDetector

console = Console(width=110)

NOUNS = (
    "tower",
    "river",
    "bridge",
    "museum",
    "engine",
    "protocol",
    "contract",
    "invoice",
    "network",
    "cluster",
    "garden",
    "library",
    "harbor",
    "market",
    "battery",
    "satellite",
    "reactor",
    "vaccine",
    "orchard",
    "glacier",
    "canal",
)
VERBS = (
    "built",
    "measured",
    "replaced",
    "opened",
    "described",
    "funded",
    "repaired",
    "tested",
    "moved",
    "studied",
)
ADJS = (
    "old",
    "modern",
    "large",
    "narrow",
    "public",
    "private",
    "northern",
    "coastal",
    "historic",
    "efficient",
)
PLACES = ("Paris", "Lyon", "Oslo", "Kyoto", "Lima", "Accra", "Perth", "Quebec", "Porto", "Riga")


def sentence(rng: random.Random) -> str:
    n1, n2 = rng.choice(NOUNS), rng.choice(NOUNS)
    return (
        f"The {rng.choice(ADJS)} {n1} of {rng.choice(PLACES)} was {rng.choice(VERBS)} "
        f"in {rng.randint(1800, 2025)} by a team that also {rng.choice(VERBS)} "
        f"the {rng.choice(ADJS)} {n2}."
    )


def text_of(rng: random.Random, chars: int) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(sentence(rng))
    return " ".join(parts)


def exchanges(count: int, variant: str, batch: int, seed: int = 7) -> list[Exchange]:
    rng = random.Random(seed)
    out = []
    shared = text_of(rng, 1024)
    for i in range(count):
        question = f"System: answer from the context.\nWhat happened to the {rng.choice(NOUNS)}?"
        output = text_of(rng, 1024)
        context: str | None = text_of(rng, 1024)
        if variant == "no_context":
            context = None
        elif variant == "short_output":
            output = ". ".join(output.split(". ")[:2])
        elif variant == "repeated_context":
            if i % batch == 0:
                shared = text_of(rng, 1024)
            context = shared
        out.append(Exchange(f"bench-{i}", question, output, context))
    return out


@dataclass
class Clock:
    """Seconds spent in each instrumented part."""

    parts: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def wrap(self, name: str, fn: Callable[..., Any], count: Callable[..., int]) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - started
                self.counts[name] = self.counts.get(name, 0) + count(*args, **kwargs)

        return timed


@contextmanager
def instrumented(clock: Clock) -> Iterator[None]:
    """Time the driver's parts: planning (splitting), tokenizing, forward passes."""
    encoder = embeddings.load_encoder()
    saved_plan, saved_forward = embeddings._plan, encoder._forward
    saved_tokenizer = encoder._tokenizer
    embeddings._plan = clock.wrap("split + plan", saved_plan, lambda e: 1)
    encoder._forward = clock.wrap(  # type: ignore[method-assign]
        "model forward", saved_forward, lambda rows, length: len(rows)
    )
    encoder._tokenizer = clock.wrap("tokenize", saved_tokenizer, lambda texts, **_: len(texts))
    try:
        yield
    finally:
        embeddings._plan = saved_plan
        encoder._forward = saved_forward  # type: ignore[method-assign]
        encoder._tokenizer = saved_tokenizer


@dataclass
class Outcome:
    variant: str
    exchanges: int
    seconds: float
    cpu_seconds: float  # this process's CPU time (all its threads)
    clock: Clock

    @property
    def eps(self) -> float:
        return self.exchanges / self.seconds

    @property
    def eps_per_cpu_s(self) -> float:
        return self.exchanges / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


def run(detector: MiniLMEmbeddingDetector, items: Sequence[Exchange], batch: int) -> Outcome:
    clock = Clock()
    with instrumented(clock):
        started, cpu = time.perf_counter(), time.process_time()
        for first in range(0, len(items), batch):
            detector.detect(items[first : first + batch])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Outcome("", len(items), seconds, cpu, clock)


def raw_rate(count: int = 512) -> float:
    """Sentences/s through sentence-transformers' encode (batch 64), ~110-char sentences."""
    rng = random.Random(3)
    texts = [sentence(rng) for _ in range(count)]
    model = embeddings.load_model()
    model.encode(texts[:64], batch_size=64)
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    return count / (time.perf_counter() - started)


def percent(outcome: Outcome, seconds: float) -> str:
    return f"{100 * seconds / outcome.seconds:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=640)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--variants", default="full,no_context,short_output,repeated_context")
    args = parser.parse_args()
    if not 1 <= args.batch <= 10_000 or not 1 <= args.exchanges <= 1_000_000:
        parser.error("--batch must be 1..10000 and --exchanges 1..1000000")
    variants = [v for v in args.variants.split(",") if v]
    known = {"full", "no_context", "short_output", "repeated_context"}
    if not variants or set(variants) - known:
        parser.error(f"--variants: some of {sorted(known)}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with console.status("loading all-MiniLM-L6-v2 from its package"):
        started = time.perf_counter()
        detector = MiniLMEmbeddingDetector(1.0)
        load_s = time.perf_counter() - started
        detector.detect(exchanges(args.batch, "full", args.batch, seed=1))  # warm-up
    console.print(
        f"model loaded in {load_s:.1f} s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; batch {args.batch}, {args.exchanges} exchanges"
    )
    with console.status("sentence-transformers encode"):
        raw = raw_rate()
    console.print(f"sentence-transformers encode, batch 64: {raw:.0f} sentences/s")

    outcomes = []
    for variant in variants:
        items = exchanges(args.exchanges, variant, args.batch)
        with console.status(f"{variant}: {len(items)} exchanges"):
            outcome = run(detector, items, args.batch)
        outcome.variant = variant
        outcomes.append(outcome)

    table = Table(title="minilm_embeddings: exchanges/s, and where the time goes")
    columns = ("variant", "exch/s", "exch/cpu-s", "rows/exch", "split", "tokenize", "forward")
    for column in (*columns, "rest", "rows/s"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for o in outcomes:
        parts = o.clock.parts
        split, tok, fwd = (parts.get(k, 0.0) for k in ("split + plan", "tokenize", "model forward"))
        rows = o.clock.counts.get("model forward", 0)
        table.add_row(
            o.variant,
            f"{o.eps:.1f}",
            f"{o.eps_per_cpu_s:.1f}",
            f"{o.clock.counts.get('tokenize', 0) / o.exchanges:.1f}",
            percent(o, split),
            percent(o, tok),
            percent(o, fwd),
            percent(o, o.seconds - split - tok - fwd),
            f"{rows / fwd:.0f}" if fwd else "-",
        )
    console.print(table)
    console.print(
        "exch/cpu-s: exchanges per second of this process's CPU time (all threads: on a busy "
        "machine, wall-clock rates say more about the neighbours). rows/exch: texts encoded per "
        "exchange (output and context sentences, question; a repeat once); split = sentence "
        "splitting and planning; rows/s: those texts per second of forward passes"
    )
    full = next((o for o in outcomes if o.variant == "full"), outcomes[0])
    print(f"RESULT embed_eps={full.eps:.1f}")


if __name__ == "__main__":
    main()
