"""Quality monitoring throughput: the metrics worker's response events/s per core, freshness
and our drift computation against Evidently's, on the real parts.

Real parts only: Tansu, `python -m llmops.local.clickhouse_server` (chDB behind ClickHouse's
HTTP interface) and `python -m streams` (the faust worker) as subprocesses, one broker per
phase and one database per phase in one store.

1. cheap tier: a backlog of N signed InferenceResults (a mix of plain answers, refusals,
   answers leaking an email or a phone number, JSON, answers with a context), then the worker
   with the default (cheap) detectors; the clock and the worker's CPU time (psutil: user +
   system, every thread) run from the last poll without a stored row to the poll where the
   windows sum to N. Per core = responses / CPU seconds of the worker process.
2. embeddings: the same with the `minilm_embeddings` detector on every response
   (embedding_sample_rate 1); n/a, with the reason, where that detector is not registered.
3. freshness: the worker started and joined first, then responses produced at a steady rate,
   each stamped with its produce time: produce -> its `responses` row visible, and produce ->
   its window's row visible (`metric_windows`, and `quality_windows` where that table gets
   rows), p50/p99 (polled every 50 ms). A window is emitted after its end plus the worker's
   grace, so the window figure includes the window length (reported separately).
4. drift: the cheap phase's stored rows, read back from ClickHouse, split by time into a
   reference (first half) and a current (second half, its latency stretched by 10% so some
   drift is found); llmops.stats.drift computes what the monitor does per feature (KS,
   Wasserstein normed and PSI per numeric column; Jensen-Shannon and chi-square per
   categorical one; Evidently's default method for each) and Evidently 0.7.23's
   `Report([DataDriftPreset()]).run(current, reference)` on the same values (Evidently is a
   dev extra of .venv) in a subprocess, rows passed in a JSON file. Both are timed in this run (best
   of --repeats); their per-column values must agree (relative 1e-6).

    .venv/bin/python bench/metrics.py [--responses 8000] [--seconds 20] [--rate 200]
        [--skip-embeddings] [--skip-evidently]

The last line is `RESULT cheap_eps_per_core=... embed_eps=... freshness_p99_ms=...
drift_speedup_vs_evidently=...`: embed_eps is per core too; freshness_p99_ms is produce ->
window row visible (the stricter of the two; row p99 is in the table).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from kafka import KafkaProducer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

# Run as a script: the repository's packages come from the checkout itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmops.clickhouse.client import connect, migrate
from llmops.kafka.signing import SigningKeys
from llmops.kafka.topics import ensure_topics
from llmops.local.broker import start_broker
from llmops.local.clickhouse_server.launcher import service_url, start_store, stop_store
from llmops.local.procs import free_port
from llmops.stats import drift
from schemas import InferenceResult, Timings, Usage
from schemas.topics import EVENT_TYPE_HEADER
from streams.worker import WorkerOptions, topics_needed

REPO = Path(__file__).resolve().parents[1]
EMBEDDING_DETECTOR = "minilm_embeddings"
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", "900"))
WINDOW_S = 10.0  # the worker's window length in every phase
POLL_S = 0.05
# The worker stores only signed results: this run's deployment key, for it and the load.
KEYS = SigningKeys("k1", secrets.token_hex(32).encode())
NUMERIC = ("total_ms", "ttft_ms", "output_tokens", "input_tokens", "output_chars")
CATEGORICAL = ("finish_reason", "pool")
AGREE_REL = 1e-6

console = Console(stderr=True)

ANSWERS = (
    "The quick brown fox jumps over the lazy dog. " * 4,
    "I'm sorry, but I can't help with that request.",
    "You can reach our support team at help.desk@example.com or call +1 415 555 0100.",
    '{"answer": "42", "confidence": 0.9}',
    "Paris is the capital of France. It lies on the Seine. The Eiffel Tower is there.",
)


def result_bytes(run: str, i: int, ts: datetime, prompt: str, stretch: float = 1.0) -> bytes:
    """Response i of a run: the answer mix above, two groups (version, variant, pool)."""
    answer = ANSWERS[i % len(ANSWERS)]
    result = InferenceResult(
        request_id=f"{run}-{i}",
        ts=ts,
        text=answer,
        prompt_text="Tell me about Paris and how to contact support.",
        context="Paris is the capital of France. The Eiffel Tower is in Paris."
        if i % 5 == 4
        else None,
        finish_reason="length" if i % 7 == 0 else "stop",
        usage=Usage(input_tokens=40 + i % 50, output_tokens=len(answer) // 4 + i % 20),
        timings=Timings(
            queue_ms=2.0,
            ttft_ms=40.0 + i % 30,
            tpot_ms=8.0,
            total_ms=(300.0 + (i * 37) % 200) * stretch,
        ),
        pool=f"pool-{i % 2}",
        model="gemma-3-270m",
        engine="transformers",
        prompt_name=prompt,
        prompt_version=1 + i % 2,
        variant="control" if i % 2 else "treatment",
        cost_usd=0.0001,
    )
    return result.to_bytes()


class Producer:
    """Signed InferenceResults onto llm.responses (kafka-python, acks=all)."""

    def __init__(self, bootstrap: str, linger_ms: int) -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms)

    def send(self, key: str, payload: bytes) -> None:
        raw_key = key.encode()
        headers = [(EVENT_TYPE_HEADER, b"InferenceResult")]
        headers.append(KEYS.header("llm.responses", headers, raw_key, payload))
        self._producer.send("llm.responses", key=raw_key, value=payload, headers=headers)

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()


def scalar(client: Any, sql: str, parameters: dict[str, Any] | None = None) -> int:
    value = client.query(sql, parameters=parameters or {}).result_rows[0][0]
    return int(value or 0)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class Phase:
    """One broker and one database for one worker run."""

    name: str
    bootstrap: str
    url: str
    client: Any
    work: Path
    broker: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start_worker(self, extra_env: dict[str, str]) -> psutil.Process:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CLICKHOUSE_URL": self.url,
            "LLMOPS_DATA_DIR": str(self.work / self.name),
            "LLMOPS_METRICS_WINDOW_S": str(WINDOW_S),
            "LLMOPS_STREAMS_APP_ID": self.name,
            "LLMOPS_SIGNING_KEY": KEYS.key.decode(),
            "LLMOPS_LOG_LEVEL": "warning",
            "OTEL_TRACES_EXPORTER": "none",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **extra_env,
        }
        self.log_path = self.work / f"{self.name}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child holds it; closed at exit
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "streams"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return psutil.Process(self.worker.pid)

    def check_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is not None:
            raise RuntimeError(f"the worker exited; see {self.log_path}")


@contextmanager
def phase(store_url: str, work: Path, label: str) -> Iterator[Phase]:
    name = f"{label}{uuid.uuid4().hex[:6]}"
    port = free_port()
    broker = start_broker("127.0.0.1", port, work / f"tansu-{name}.log")
    url = f"{store_url}/{name}"
    client = None
    current: Phase | None = None
    try:
        migrate(url)
        client = connect(url)
        bootstrap = f"127.0.0.1:{port}"
        ensure_topics(bootstrap, topics_needed(WorkerOptions(app_id=name)))
        current = Phase(name, bootstrap, url, client, work, broker)
        yield current
    finally:
        if current is not None and current.worker is not None:
            current.worker.send_signal(signal.SIGTERM)
            try:
                current.worker.wait(60)
            except subprocess.TimeoutExpired:
                current.worker.kill()
                current.worker.wait()
        if client is not None:
            client.close()
        broker.terminate()
        broker.wait(10)


# --- 1 and 2: throughput -------------------------------------------------------------------


@dataclass
class Throughput:
    label: str
    responses: int
    wall_s: float
    cpu_s: float
    start_s: float  # worker start -> first stored row (start-up, group join, model load)

    @property
    def eps(self) -> float:
        return self.responses / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def eps_per_core(self) -> float:
        return self.responses / self.cpu_s if self.cpu_s > 0 else 0.0

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def throughput(
    store_url: str,
    work: Path,
    label: str,
    n: int,
    extra_env: dict[str, str],
    progress: Progress,
) -> tuple[Throughput, str]:
    """A backlog of n responses through a fresh worker; returns the measure and the database
    (its rows feed the drift phase)."""
    task = progress.add_task(f"{label}: producing {n} responses", total=n)
    with phase(store_url, work, label) as ph:
        prompt = f"bench-{ph.name}"
        start = datetime.now(UTC) - timedelta(minutes=10)  # a backlog: its windows closed
        producer = Producer(ph.bootstrap, linger_ms=20)
        for i in range(n):
            ts = start + timedelta(milliseconds=i)
            producer.send(f"{ph.name}-{i}", result_bytes(ph.name, i, ts, prompt))
        producer.close()
        progress.update(task, description=f"{label}: worker starting", completed=0)
        started = time.monotonic()
        process = ph.start_worker(extra_env)
        cpu_before = cpu_seconds(process)
        clock = started
        first = 0.0
        while True:
            if time.monotonic() - started > TIMEOUT_S:
                raise TimeoutError(f"{label}: the worker did not finish; see {ph.log_path}")
            ph.check_worker()
            now = time.monotonic()
            cpu_now = cpu_seconds(process)
            stored = scalar(ph.client, "SELECT count() FROM responses")
            if not stored:
                clock, cpu_before = now, cpu_now  # the last poll before any row
                time.sleep(POLL_S)
                continue
            first = first or now
            summed = scalar(
                ph.client,
                "SELECT sum(requests) FROM metric_windows FINAL WHERE prompt_name = {p:String}",
                {"p": prompt},
            )
            progress.update(
                task, description=f"{label}: {stored} rows, {summed} in windows", completed=summed
            )
            if stored >= n and summed >= n:
                measured = Throughput(label, n, now - clock, cpu_now - cpu_before, first - started)
                return measured, ph.name
            time.sleep(POLL_S)


# --- 3: freshness ------------------------------------------------------------------------


@dataclass
class Freshness:
    rate: float
    seconds: float
    responses: int
    row_ms: list[float] = field(default_factory=list)
    window_ms: dict[str, list[float]] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else math.nan


def freshness(
    store_url: str, work: Path, rate: float, seconds: float, progress: Progress
) -> Freshness:
    n = max(1, int(rate * seconds))
    out = Freshness(rate, seconds, n)
    task = progress.add_task("freshness: worker starting", total=n)
    with phase(store_url, work, "fresh") as ph:
        prompt = f"bench-{ph.name}"
        producer = Producer(ph.bootstrap, linger_ms=0)
        ph.start_worker({})
        # Warm up: one response, until its row is stored (group joined, store reached).
        producer.send(f"{ph.name}-warm", result_bytes(f"{ph.name}-warm", 0, now_utc(), "warm"))
        producer.flush()
        started = time.monotonic()
        while not scalar(ph.client, "SELECT count() FROM responses"):
            ph.check_worker()
            if time.monotonic() - started > TIMEOUT_S:
                raise TimeoutError(f"freshness: the worker stored nothing; see {ph.log_path}")
            time.sleep(POLL_S)

        produced: dict[int, tuple[float, datetime]] = {}

        def load() -> None:
            t0 = time.time()
            for i in range(n):
                due = t0 + i / rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                sent_at = time.time()
                ts = datetime.fromtimestamp(sent_at, UTC)
                produced[i] = (sent_at, ts)
                producer.send(f"{ph.name}-{i}", result_bytes(ph.name, i, ts, prompt))
                producer.flush()  # each response leaves now, as a live service's would

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        seen_rows: dict[int, float] = {}
        seen_windows: dict[str, dict[tuple[int, int, str], tuple[float, float]]] = {}
        tables = ["metric_windows"]
        if scalar(ph.client, "EXISTS TABLE quality_windows"):
            tables.append("quality_windows")
        deadline = time.monotonic() + seconds + 3 * WINDOW_S + 30
        prefix = f"{ph.name}-"
        while time.monotonic() < deadline:
            ph.check_worker()
            now = time.time()
            ids = ph.client.query(
                "SELECT request_id FROM responses WHERE startsWith(request_id, {p:String})",
                parameters={"p": prefix},
            ).result_rows
            for (request_id,) in ids:
                tail = request_id[len(prefix) :]
                if tail.isdigit():
                    seen_rows.setdefault(int(tail), now)
            for table in tables:
                segment = " AND segment = ''" if table == "quality_windows" else ""
                found = ph.client.query(
                    f"SELECT toUnixTimestamp64Milli(window_start), prompt_version, pool, "
                    f"toUnixTimestamp64Milli(window_end) FROM {table} FINAL "
                    f"WHERE prompt_name = {{p:String}}{segment}",
                    parameters={"p": prompt},
                ).result_rows
                windows = seen_windows.setdefault(table, {})
                for start_ms, version, pool, end_ms in found:
                    windows.setdefault((int(start_ms), int(version), str(pool)), (now, end_ms))
            # A windows table the worker does not fill (quality_windows before its agent
            # exists) is not waited for once the responses and metric_windows are complete.
            done = len(seen_rows) >= n and all(
                len(_window_latencies(produced, seen_windows.get(t, {}))) >= n
                for t in tables
                if t == "metric_windows" or seen_windows.get(t)
            )
            progress.update(
                task,
                description=f"freshness: {len(produced)} produced, {len(seen_rows)} rows visible",
                completed=len(seen_rows),
            )
            if done and not thread.is_alive():
                break
            time.sleep(POLL_S)
        thread.join()
        producer.close()
        out.row_ms = [1000 * (seen_rows[i] - produced[i][0]) for i in seen_rows if i in produced]
        for table in tables:
            if table == "metric_windows" or seen_windows.get(table):
                out.window_ms[table] = _window_latencies(produced, seen_windows.get(table, {}))
        if len(out.row_ms) < n:
            console.print(f"[yellow]freshness: only {len(out.row_ms)} of {n} rows became visible")
    return out


def _window_latencies(
    produced: dict[int, tuple[float, datetime]],
    windows: dict[tuple[int, int, str], tuple[float, float]],
) -> list[float]:
    """produce -> its window's row first visible, for each response whose window is seen."""
    if not windows:
        return []
    length_ms = int(WINDOW_S * 1000)
    out = []
    for i, (sent_at, ts) in list(produced.items()):
        start_ms = math.floor(ts.timestamp() * 1000) // length_ms * length_ms
        seen = windows.get((start_ms, 1 + i % 2, f"pool-{i % 2}"))
        if seen is not None:
            out.append(1000 * (seen[0] - sent_at))
    return out


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- 4: drift ----------------------------------------------------------------------------


@dataclass
class DriftOutcome:
    rows: int
    ours_s: float
    ours_all_s: float
    evidently_s: float | None
    columns: list[tuple[str, str, float, float | None]]  # column, method, ours, evidently
    note: str = ""

    @property
    def speedup(self) -> float | None:
        if self.evidently_s is None or self.ours_s <= 0:
            return None
        return self.evidently_s / self.ours_s

    @property
    def agree(self) -> bool:
        return all(
            theirs is not None and math.isclose(ours, theirs, rel_tol=AGREE_REL, abs_tol=1e-12)
            for _, _, ours, theirs in self.columns
        )


def drift_rows(store_url: str, database: str, stretch: float) -> dict[str, dict[str, list[Any]]]:
    """The stored responses of a throughput phase as reference and current columns."""
    client = connect(f"{store_url}/{database}")
    try:
        result = client.query(
            f"SELECT {', '.join(NUMERIC + CATEGORICAL)} FROM responses FINAL "
            "ORDER BY ts, request_id"
        ).result_rows
    finally:
        client.close()
    half = len(result) // 2
    names = NUMERIC + CATEGORICAL
    sides: dict[str, dict[str, list[Any]]] = {"reference": {}, "current": {}}
    for side, part in (("reference", result[:half]), ("current", result[half:])):
        for j, name in enumerate(names):
            values = [row[j] for row in part]
            if name in NUMERIC:
                values = [
                    float(v) * (stretch if side == "current" and name == "total_ms" else 1)
                    for v in values
                ]
            else:
                values = [str(v) for v in values]
            sides[side][name] = values
    return sides


def counts(values: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for value in values:
        out[value] = out.get(value, 0.0) + 1.0
    return out


def default_statistic(
    reference: Sequence[Any], current: Sequence[Any], categorical: bool
) -> tuple[str, float]:
    """Evidently's default method for the column, computed by llmops.stats.drift."""
    n_unique = len(set(reference) | set(current))
    choice = drift.default_method(
        "categorical" if categorical else "numeric", len(reference), n_unique
    )
    method = choice.method
    if method == "wasserstein":
        return method, drift.wasserstein_normed(reference, current)
    if method == "ks":
        return method, drift.ks_test(reference, current).p_value
    if method == "psi":
        return method, drift.psi(reference, current)
    ref, cur = counts([str(v) for v in reference]), counts([str(v) for v in current])
    if method == "jensenshannon":
        return method, drift.jensen_shannon(ref, cur)
    if method == "chisquare":
        return method, drift.chi_square_test(ref, cur).p_value
    return method, drift.z_test_binary(ref, cur).p_value


def ours_default(sides: dict[str, dict[str, list[Any]]]) -> dict[str, tuple[str, float]]:
    ref, cur = sides["reference"], sides["current"]
    return {
        name: default_statistic(ref[name], cur[name], name in CATEGORICAL)
        for name in NUMERIC + CATEGORICAL
    }


def ours_all(sides: dict[str, dict[str, list[Any]]]) -> int:
    """What the monitor runs per feature: KS, Wasserstein and PSI on numeric columns,
    Jensen-Shannon and chi-square on categorical ones (plus the default method each)."""
    ref, cur = sides["reference"], sides["current"]
    tests = 0
    for name in NUMERIC:
        r, c = np.asarray(ref[name]), np.asarray(cur[name])
        drift.ks_test(r, c)
        drift.wasserstein_normed(r, c)
        drift.psi(r, c)
        tests += 3
    for name in CATEGORICAL:
        rc, cc = counts(ref[name]), counts(cur[name])
        drift.jensen_shannon(rc, cc)
        drift.chi_square_test(rc, cc)
        tests += 2
    ours_default(sides)
    return tests


def best_of(repeats: int, call: Callable[[], object]) -> float:
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


EVIDENTLY_SCRIPT = r"""
import json, os, sys, time
os.environ["DO_NOT_TRACK"] = "1"
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

data = json.load(open(sys.argv[1]))
repeats = int(sys.argv[2])
definition = DataDefinition(
    numerical_columns=data["numeric"], categorical_columns=data["categorical"]
)
ref = Dataset.from_pandas(pd.DataFrame(data["reference"]), data_definition=definition)
cur = Dataset.from_pandas(pd.DataFrame(data["current"]), data_definition=definition)
best, values = float("inf"), {}
for _ in range(repeats):
    started = time.perf_counter()
    metrics = Report([DataDriftPreset()]).run(cur, ref).dict()["metrics"]
    best = min(best, time.perf_counter() - started)
for metric in metrics:
    config = metric["config"]
    if "column" in config:
        values[config["column"]] = [config["method"], float(metric["value"])]
print(json.dumps({"seconds": best, "values": values}))
"""

METHOD_NAMES = {
    "wasserstein": "Wasserstein",
    "ks": "K-S",
    "psi": "PSI",
    "jensenshannon": "Jensen-Shannon",
    "chisquare": "chi-square",
    "z": "Z-test",
}


def drift_phase(
    store_url: str,
    database: str,
    work: Path,
    repeats: int,
    skip_evidently: bool,
    progress: Progress,
) -> DriftOutcome:
    task = progress.add_task("drift: reading the stored rows", total=None)
    sides = drift_rows(store_url, database, stretch=1.1)
    rows = len(sides["reference"][NUMERIC[0]]) + len(sides["current"][NUMERIC[0]])
    progress.update(task, description=f"drift: llmops.stats.drift on {rows} rows")
    ours = ours_default(sides)
    ours_s = best_of(repeats, lambda: ours_default(sides))
    ours_all_s = best_of(repeats, lambda: ours_all(sides))
    evidently_s: float | None = None
    theirs: dict[str, list[Any]] = {}
    note = ""
    if skip_evidently:
        note = "--skip-evidently"
    else:
        python = sys.executable  # Evidently is a dev extra of .venv (with pandas 2.3.3)
        progress.update(task, description=f"drift: Evidently DataDriftPreset on {rows} rows")
        data_path = work / "drift-rows.json"
        data_path.write_text(
            json.dumps(
                {
                    "numeric": list(NUMERIC),
                    "categorical": list(CATEGORICAL),
                    "reference": sides["reference"],
                    "current": sides["current"],
                }
            )
        )
        script = work / "evidently_drift.py"
        script.write_text(EVIDENTLY_SCRIPT)
        done = subprocess.run(
            [str(python), str(script), str(data_path), str(repeats)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"Evidently failed: {done.stderr.strip().splitlines()[-1:]}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        evidently_s = float(answer["seconds"])
        theirs = answer["values"]
    progress.remove_task(task)
    columns = []
    for name, (method, value) in ours.items():
        other = theirs.get(name)
        if other is not None and METHOD_NAMES[method].lower() not in str(other[0]).lower():
            note = f"method differs for {name}: ours {method}, Evidently {other[0]}"
        columns.append((name, method, value, None if other is None else float(other[1])))
    return DriftOutcome(rows, ours_s, ours_all_s, evidently_s, columns, note)


# --- main --------------------------------------------------------------------------------


def embedding_detector_missing() -> str | None:
    """Why the embedding phase cannot run here, or None (checked by name: the model is
    loaded by the worker, not by this process)."""
    from streams.detectors import drivers  # noqa: F401  (registers the shipped drivers)
    from streams.detectors.factory import DETECTORS

    if EMBEDDING_DETECTOR not in DETECTORS.names():
        return f"detector {EMBEDDING_DETECTOR} is not registered in this tree"
    return None


def cheap_detectors() -> list[str]:
    from streams.detectors.drivers import CHEAP_TIER

    return list(CHEAP_TIER)


def fmt(value: float | None, spec: str = ".0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=8000, help="backlog for the cheap tier")
    parser.add_argument(
        "--embed-responses", type=int, default=2000, help="backlog with embeddings on every one"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="freshness: producing time")
    parser.add_argument("--rate", type=float, default=200.0, help="freshness: responses/s")
    parser.add_argument("--repeats", type=int, default=3, help="drift timings: best of")
    parser.add_argument("--skip-embeddings", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args()
    for name in ("responses", "embed_responses", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be positive")

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        work = Path(os.environ.get("BENCH_WORK_DIR") or tmp)
        work.mkdir(parents=True, exist_ok=True)
        store_port = free_port()
        progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        )
        store = start_store(work / "store", "127.0.0.1", store_port, log_path=work / "store.log")
        try:
            store_url = service_url(work / "store", "127.0.0.1", store_port)
            with progress:
                cheap, cheap_db = throughput(
                    store_url,
                    work,
                    "cheap",
                    args.responses,
                    {"LLMOPS_DETECTORS": json.dumps(cheap_detectors())},
                    progress,
                )
                embed: Throughput | None = None
                embed_note = "--skip-embeddings" if args.skip_embeddings else None
                if embed_note is None:
                    embed_note = embedding_detector_missing()
                if embed_note is None:
                    embed, _ = throughput(
                        store_url,
                        work,
                        "embed",
                        args.embed_responses,
                        {
                            "LLMOPS_DETECTORS": json.dumps(
                                [*cheap_detectors(), EMBEDDING_DETECTOR]
                            ),
                            "LLMOPS_EMBEDDING_SAMPLE_RATE": "1.0",
                        },
                        progress,
                    )
                fresh = freshness(store_url, work, args.rate, args.seconds, progress)
                drifted = drift_phase(
                    store_url, cheap_db, work, args.repeats, args.skip_evidently, progress
                )
        finally:
            stop_store(store)

    load = (load_before, os.getloadavg()[0])
    report(cores, load, cheap, embed, embed_note, fresh, drifted)


def report(
    cores: int,
    load: tuple[float, float],
    cheap: Throughput,
    embed: Throughput | None,
    embed_note: str | None,
    fresh: Freshness,
    drifted: DriftOutcome,
) -> None:
    out = Console(width=max(120, console.width))
    table = Table(title=f"metrics worker throughput ({cores} cores shared with broker and store)")
    for column in (
        "tier",
        "responses",
        "wall s",
        "events/s",
        "worker cpu s",
        "cores used",
        "events/s per core",
        "start s",
    ):
        table.add_column(column, justify="right")
    for row in (cheap, embed):
        if row is not None:
            table.add_row(
                row.label,
                str(row.responses),
                f"{row.wall_s:.2f}",
                f"{row.eps:.0f}",
                f"{row.cpu_s:.2f}",
                f"{row.cores:.2f}",
                f"{row.eps_per_core:.0f}",
                f"{row.start_s:.1f}",
            )
    out.print(table)
    out.print(
        f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end: wall-clock rates "
        "depend on what else runs; per core (responses / worker CPU seconds) much less"
    )
    if embed is None:
        out.print(f"embeddings: n/a ({embed_note})")

    table = Table(
        title=f"freshness: {fresh.responses} responses at {fresh.rate:.0f}/s, "
        f"window {WINDOW_S:.0f} s"
    )
    for column in ("produce ->", "seen", "p50 ms", "p99 ms", "max ms", "p99 - window ms"):
        table.add_column(column, justify="right")
    table.add_row(
        "responses row",
        str(len(fresh.row_ms)),
        fmt(percentile(fresh.row_ms, 50)),
        fmt(percentile(fresh.row_ms, 99)),
        fmt(max(fresh.row_ms, default=math.nan)),
        "",
    )
    for name, values in fresh.window_ms.items():
        p99 = percentile(values, 99)
        table.add_row(
            f"{name} row",
            str(len(values)),
            fmt(percentile(values, 50)),
            fmt(p99),
            fmt(max(values, default=math.nan)),
            fmt(p99 - 1000 * WINDOW_S),
        )
    out.print(table)

    table = Table(
        title=f"drift on {drifted.rows} stored rows (reference: first half; current: second)"
    )
    for column in ("column", "method", "ours", "Evidently", "agree"):
        table.add_column(column, justify="right")
    for name, method, ours, theirs in drifted.columns:
        agree = (
            ""
            if theirs is None
            else ("yes" if math.isclose(ours, theirs, rel_tol=AGREE_REL, abs_tol=1e-12) else "NO")
        )
        table.add_row(name, method, f"{ours:.9g}", fmt(theirs, ".9g"), agree)
    out.print(table)
    timings = (
        f"ours (Evidently's methods): {1000 * drifted.ours_s:.1f} ms; ours (all the monitor's "
        f"tests): {1000 * drifted.ours_all_s:.1f} ms; Evidently DataDriftPreset: "
        f"{fmt(None if drifted.evidently_s is None else 1000 * drifted.evidently_s, '.1f')} ms"
    )
    out.print(timings)
    if drifted.note:
        out.print(f"[yellow]{drifted.note}")
    if drifted.evidently_s is not None and not drifted.agree:
        out.print("[red]ours and Evidently's values differ: the speed-up is not comparable")

    # The slowest windows table's p99 (metric_windows, and quality_windows where filled).
    freshness_p99 = max(
        (percentile(values, 99) for values in fresh.window_ms.values() if values), default=math.nan
    )
    speedup = drifted.speedup if drifted.agree else None
    embed_eps = f"{embed.eps_per_core:.0f}" if embed is not None else "n/a"
    print(
        f"RESULT cheap_eps_per_core={cheap.eps_per_core:.0f} embed_eps={embed_eps} "
        f"freshness_p99_ms={fmt(freshness_p99)} "
        f"drift_speedup_vs_evidently={fmt(speedup, '.1f')}"
    )


if __name__ == "__main__":
    main()
