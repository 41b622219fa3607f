"""How many responses/s the metrics worker takes from llm.responses into ClickHouse.

Real parts only: Tansu (the broker), `python -m llmops.local.clickhouse_server`
(chDB behind ClickHouse's HTTP
interface) and `python -m streams` (the faust worker) as subprocesses. A backlog of N
InferenceResults is produced first; then the worker starts and the clock runs from the first
`responses` row to the last. A response counts once its row is stored and its features are
published and counted in a window; the run ends when the `metric_windows` rows sum to N.
Everything shares the machine's cores (the producer is done before the clock starts).

    .venv/bin/python bench/streams.py [--responses 20000] [--batch-sizes 500,2000]
        [--profile stacks.txt]   # py-spy (collapsed stacks) over the worker while it stores

`worker cpu s` is the worker process's CPU time (user + system, all its threads) from the
first row to the last window: `per core/s` is responses per second of that CPU time.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from kafka import KafkaProducer

# Run as a script: the repository's packages come from the checkout itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from llmops.clickhouse.client import connect, migrate
from llmops.kafka.signing import SigningKeys
from llmops.kafka.topics import ensure_topics
from llmops.local.broker import start_broker
from llmops.local.clickhouse_server.launcher import service_url, start_store, stop_store
from llmops.local.procs import free_port
from schemas import InferenceResult, Timings, Usage
from schemas.topics import EVENT_TYPE_HEADER
from streams.worker import WorkerOptions, topics_needed

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", "600"))
# The worker stores only signed results: this run's deployment key, for it and the load.
BENCH_KEYS = SigningKeys("k1", secrets.token_hex(32).encode())


@dataclass
class Outcome:
    batch_size: int
    responses: int
    first_row_s: float  # worker start -> first responses row (start-up, group join)
    rows_s: float  # first row -> all N rows stored
    windows_s: float  # first row -> metric_windows sum to N
    windows: int
    cpu_s: float = 0.0  # the worker's CPU time from the first row to the last window

    @property
    def per_core_per_s(self) -> float:
        return self.responses / self.cpu_s if self.cpu_s > 0 else 0.0

    @property
    def responses_per_s(self) -> float:
        return self.responses / self.rows_s if self.rows_s > 0 else 0.0

    @property
    def end_to_end_per_s(self) -> float:
        return self.responses / self.windows_s if self.windows_s > 0 else 0.0


def make_results(run: str, n: int) -> list[bytes]:
    start = datetime.now(UTC) - timedelta(minutes=10)  # a backlog: its windows closed long ago
    out = []
    for i in range(n):
        result = InferenceResult(
            request_id=f"{run}-{i}",
            ts=start + timedelta(milliseconds=i),
            text="The quick brown fox jumps over the lazy dog. " * 4,
            finish_reason="length" if i % 5 == 0 else "stop",
            usage=Usage(input_tokens=40 + i % 50, output_tokens=30 + i % 20),
            timings=Timings(
                queue_ms=2.0, ttft_ms=40.0 + i % 30, tpot_ms=8.0, total_ms=300.0 + i % 200
            ),
            pool=f"pool-{i % 2}",
            model="gemma-3-270m",
            engine="transformers",
            prompt_name="greet",
            prompt_version=1 + i % 2,
            variant="control" if i % 2 else "treatment",
            cost_usd=0.0001,
        )
        out.append(result.to_bytes())
    return out


def produce(bootstrap: str, payloads: list[bytes], run: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for i, payload in enumerate(payloads):
        key = f"{run}-{i}".encode()
        headers = [(EVENT_TYPE_HEADER, b"InferenceResult")]
        headers.append(BENCH_KEYS.header("llm.responses", headers, key, payload))
        producer.send("llm.responses", key=key, value=payload, headers=headers)
    producer.flush()
    producer.close()


def scalar(client: object, sql: str) -> int:
    value = client.query(sql).result_rows[0][0]  # type: ignore[attr-defined]
    return int(value or 0)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (collapsed stacks, only threads holding the GIL) attached to the worker."""
    spy = Path(os.environ.get("PY_SPY", "py-spy"))
    options = ["--format", "raw", "--gil", "--rate", "250", "--nonblocking"]
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), *options, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Where a sampled stack's time goes: the first of these found from the innermost frame out
# (our code's functions); stacks with none of them are faust/aiokafka/asyncio's own work.
PARTS: tuple[tuple[str, str], ...] = (
    ("decode (pydantic)", r"Record\.decode|model_validate_json"),
    ("verify signature", r"Record\.verify|SigningKeys\.verify"),
    ("detector {0}", r"^(\w+)\.detect \(streams/detectors"),
    ("detectors (batch glue)", r"detect_signals|_answers|exchange_of"),
    (
        "spans, trace context",
        r"consumer_span|batch_span|json_headers|producer_headers|inject_context|"
        r"extract_context|set_attributes|start_as_current_span|start_span|use_span|"
        r"set_span_in_context|_span \(streams",
    ),
    ("row building", r"response_row|signal_columns|extract_features|request_row"),
    ("features encode", r"features_with_signals|ResponseFeatures\.to_bytes|group_key_text"),
    ("produce (acks=all)", r"Delivery\.publish"),
    ("ClickHouse insert", r"TableWriter|insert_rows|rows_to_arrow|insert_arrow"),
    ("ack", r"Delivery\.ack"),
    ("convert (other)", r"Converter\.convert|SinkAgent\.convert|to_record|finish_responses"),
)


def profile_part(frames: list[str]) -> str:
    if any("WindowsAgent." in f or "emit_due_windows" in f for f in frames):
        return "windows agent"
    for frame in reversed(frames):
        for name, pattern in PARTS:
            found = re.search(pattern, frame)
            if found:
                return name.format(*found.groups())
    if any("_WorkItem" in f for f in frames):
        return "threads (other)"
    return "faust/aiokafka consume, event loop"


def print_profile(path: Path, responses: int, cpu_s: float) -> None:
    """py-spy's samples by part, scaled to the worker's measured CPU per response."""
    parts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            parts[profile_part(stack.split(";"))] += int(count)
    total = sum(parts.values())
    if not total:
        print(f"no samples in {path}")
        return
    per_response_us = 1e6 * cpu_s / responses
    print(f"\nworker CPU by part (py-spy, {total} samples; {per_response_us:.0f} us/response)")
    print(f"{'part':36} {'share':>6} {'us/response':>12}")
    for name, count in parts.most_common():
        share = count / total
        print(f"{name:36} {100 * share:5.1f}% {share * per_response_us:12.1f}")


def run_case(
    store_url: str, batch_size: int, n: int, work: Path, profile: Path | None = None
) -> Outcome:
    """One worker over its own broker (a fresh llm.responses holding only this backlog)."""
    run = "b" + uuid.uuid4().hex[:8]
    broker_port = free_port()
    broker = start_broker("127.0.0.1", broker_port, work / f"tansu-{run}.log")
    try:
        return measure(f"127.0.0.1:{broker_port}", store_url, batch_size, n, work, run, profile)
    finally:
        broker.terminate()
        broker.wait(10)


def measure(
    bootstrap: str,
    store_url: str,
    batch_size: int,
    n: int,
    work: Path,
    run: str,
    profile: Path | None = None,
) -> Outcome:
    url = f"{store_url}/{run}"
    migrate(url)
    client = connect(url)
    ensure_topics(bootstrap, topics_needed(WorkerOptions(app_id=run)))
    produce(bootstrap, make_results(run, n), run)

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLICKHOUSE_URL": url,
        "LLMOPS_DATA_DIR": str(work / run),
        "LLMOPS_SINK_BATCH_SIZE": str(batch_size),
        "LLMOPS_METRICS_WINDOW_S": "10",
        "LLMOPS_STREAMS_APP_ID": run,
        "LLMOPS_SIGNING_KEY": BENCH_KEYS.key.decode(),
        "LLMOPS_LOG_LEVEL": "warning",
        "OTEL_TRACES_EXPORTER": "none",
    }
    log = open(work / f"{run}.log", "wb")  # noqa: SIM115 - closed below
    started = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    process = psutil.Process(worker.pid)
    profiler: subprocess.Popen[bytes] | None = None
    first = rows_done = windows_done = cpu_first = cpu_s = 0.0
    try:
        where = f"WHERE startsWith(request_id, '{run}-')"
        while time.monotonic() - started < TIMEOUT_S:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {work / f'{run}.log'}")
            stored = scalar(client, f"SELECT count() FROM responses {where}")
            now = time.monotonic()
            if stored and not first:
                first = now
                cpu_first = cpu_seconds(process)
                if profile is not None:
                    profiler = start_profiler(worker.pid, profile)
            if stored >= n and not rows_done:
                rows_done = now
            if rows_done:
                summed = scalar(
                    client,
                    "SELECT sum(requests) FROM metric_windows FINAL WHERE prompt_name = 'greet'",
                )
                if summed >= n:
                    windows_done = now
                    cpu_s = cpu_seconds(process) - cpu_first
                    break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"worker did not finish; see {work / f'{run}.log'}")
        windows = scalar(client, "SELECT count() FROM metric_windows FINAL")
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            profiler.wait(60)
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        log.close()
        client.close()
    return Outcome(
        batch_size=batch_size,
        responses=n,
        first_row_s=first - started,
        rows_s=rows_done - first,
        windows_s=windows_done - first,
        windows=windows,
        cpu_s=cpu_s,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=20_000)
    parser.add_argument("--batch-sizes", default="500,2000")
    parser.add_argument(
        "--profile", type=Path, help="py-spy's collapsed stacks of the worker (last size) here"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        work = Path(os.environ.get("BENCH_WORK_DIR") or tmp)
        work.mkdir(parents=True, exist_ok=True)
        store_port = free_port()
        store = start_store(work / "store", "127.0.0.1", store_port, log_path=work / "store.log")
        try:
            outcomes = [
                run_case(
                    service_url(work / "store", "127.0.0.1", store_port),
                    size,
                    args.responses,
                    work,
                    args.profile if size == sizes[-1] else None,
                )
                for size in sizes
            ]
        finally:
            stop_store(store)

    print(f"\nmetrics worker, {args.responses} responses backlog, {os.cpu_count()} cores shared")
    header = (
        f"{'batch':>6} {'start s':>8} {'rows s':>8} {'responses/s':>12} "
        f"{'+windows s':>11} {'end-to-end/s':>13} {'windows':>8} {'worker cpu s':>13} "
        f"{'per core/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for o in outcomes:
        print(
            f"{o.batch_size:>6} {o.first_row_s:>8.1f} {o.rows_s:>8.2f} {o.responses_per_s:>12.0f} "
            f"{o.windows_s:>11.2f} {o.end_to_end_per_s:>13.0f} {o.windows:>8} {o.cpu_s:>13.2f} "
            f"{o.per_core_per_s:>11.0f}"
        )
    if args.profile is not None and args.profile.exists():
        last = outcomes[-1]
        print_profile(args.profile, last.responses, last.cpu_s)
    best = max(outcomes, key=lambda o: o.responses_per_s)
    print(f"RESULT responses_per_s={best.responses_per_s:.0f}")


if __name__ == "__main__":
    main()
