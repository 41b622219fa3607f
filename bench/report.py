"""Experiment report benchmark: `llmops experiments report` on 1M responses in ClickHouse.

Starts the store service (chDB behind our ClickHouse HTTP interface) on a temporary data dir,
migrates it, writes N synthetic responses of one experiment (two variants, the treatment
with a 2-point higher refusal rate and 5% slower) with INSERT ... SELECT FROM numbers(),
its start event in `experiment_events` and feedback for 20% of the responses, then times the
report (every query and the statistics) several times.

    .venv/bin/python bench/report.py [--rows 1000000] [--runs 3]

Ends with `RESULT report_1m_s=...` (the median run, seconds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmops.clickhouse import client as store
from llmops.experiments.events import VariantSpec, start
from llmops.experiments.report import build_report
from llmops.local.clickhouse_server.launcher import service_url, start_store, stop_store
from llmops.local.procs import free_port
from streams.agents.feedback import experiment_row

NAME = "bench-exp"

RESPONSES_SQL = """
INSERT INTO responses (request_id, event_id, ts, prompt_name, prompt_version, experiment,
    variant, finish_reason, error_kind, input_tokens, output_tokens, ttft_ms, total_ms,
    cost_usd, signals)
SELECT
    concat('r', toString(number)) AS request_id,
    concat('e', toString(number)) AS event_id,
    toDateTime64('2026-12-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number) AS ts,
    'greet' AS prompt_name,
    if(number % 2 = 0, 1, 2) AS prompt_version,
    {name:String} AS experiment,
    if(number % 2 = 0, 'control', 'new') AS variant,
    'stop' AS finish_reason,
    if(cityHash64(number, 1) % 100 = 0, 'engine_error', '') AS error_kind,
    20 AS input_tokens,
    toUInt32(50 + cityHash64(number, 2) % 100) AS output_tokens,
    (cityHash64(number, 3) % 1000) / 10.0 AS ttft_ms,
    (200 + (cityHash64(number, 4) % 10000) / 20.0) * if(number % 2 = 0, 1.0, 1.05) AS total_ms,
    0.0001 * (1 + cityHash64(number, 5) % 10) AS cost_usd,
    map('refusal', toFloat64(cityHash64(number, 6) % 1000 < if(number % 2 = 0, 50, 70)),
        'pii_output', toFloat64(cityHash64(number, 7) % 1000 < 5),
        'toxicity', (cityHash64(number, 8) % 1000) / 1800.0) AS signals
FROM numbers({rows:UInt64})
"""

FEEDBACK_SQL = """
INSERT INTO feedback (request_id, event_id, ts, score, thumbs)
SELECT concat('r', toString(number)), concat('f', toString(number)),
    toDateTime64('2026-12-01 01:00:00', 3, 'UTC'),
    toFloat64(1 + cityHash64(number, 9) % 5), if(cityHash64(number, 10) % 3 = 0, -1, 1)
FROM numbers({rows:UInt64}) WHERE number % 5 = 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        proc = start_store(tmp / "data", "127.0.0.1", port, log_path=tmp / "store.log")
        try:
            url = f"{service_url(tmp / 'data', '127.0.0.1', port)}/bench"
            client = store.ensure_database(url)
            store.apply_migrations(client)
            began = time.perf_counter()
            client.command(RESPONSES_SQL, parameters={"name": NAME, "rows": args.rows})
            client.command(FEEDBACK_SQL, parameters={"rows": args.rows})
            experiment = start(
                NAME,
                "greet",
                [VariantSpec("control", "greet", 1, 50), VariantSpec("new", "greet", 2, 50)],
                datetime(2026, 11, 30, tzinfo=UTC),
            )
            row = experiment_row(experiment)
            client.insert("experiment_events", [list(row.values())], column_names=list(row))
            inserted = time.perf_counter() - began
            print(f"inserted {args.rows:,} responses in {inserted:.1f}s")
            times = []
            for run in range(args.runs):
                t0 = time.perf_counter()
                analysis = build_report(client, NAME)
                times.append(time.perf_counter() - t0)
                print(f"run {run + 1}: {times[-1]:.2f}s")
            print(
                f"{'metric':<18} {'variant':<8} {'control':>10} {'treatment':>10} "
                f"{'diff':>10} {'p':>9} {'always-valid p':>15}"
            )
            for r in analysis.results:
                print(
                    f"{r.metric:<18} {r.variant:<8} {r.control:>10.4g} {r.treatment:>10.4g} "
                    f"{r.difference.estimate:>+10.4g} {r.p_value:>9.2g} "
                    f"{r.always_valid_adjusted:>15.2g}"
                )
            for line in analysis.verdict:
                print("verdict:", line)
            client.close()
        finally:
            stop_store(proc)
    print(f"RESULT report_1m_s={statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
