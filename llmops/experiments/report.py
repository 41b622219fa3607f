"""`llmops experiments report`: an experiment's data from ClickHouse, analysed.

Fast on millions of responses: ClickHouse aggregates (counts, sums, sums of squares,
t-digest p50/p95, per-unit cost and request moments) and only a bounded sample of latencies
comes back, for the rank test. The SQL is built here from the metric definitions
(llmops.experiments.metrics, constants); the experiment's name and times are parameters.
The experiment's definition (control, shares, sticky kind) is its newest state in
`experiment_events`; without one, the variants seen split evenly and "control" (or the first
name) is the control.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from llmops.experiments.analysis import Analysis, Moments, UnitMoments, VariantData, analyze
from llmops.experiments.metrics import (
    CONTINUOUS,
    COST,
    FEEDBACK_SCORE,
    OK,
    RATES,
    THUMBS_UP,
    Metric,
    judge_metric,
)
from schemas import Experiment

SAMPLE_PER_VARIANT = 5000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_VARIANTS_READ = 64
MAX_CHECKS = 16


def _f(expr: str) -> str:
    return f"toFloat64({expr})"


def main_query() -> str:
    parts = ["variant", "count() AS responses"]
    for m in RATES:
        parts.append(f"countIf({m.checked}) AS n_{m.name}")
        parts.append(f"countIf(({m.checked}) AND ({m.hit})) AS h_{m.name}")
    for m in CONTINUOUS:
        v = _f(m.value)
        parts += [
            f"countIf({m.checked}) AS c_{m.name}",
            f"sumIf({v}, {m.checked}) AS s_{m.name}",
            f"sumIf({v} * {v}, {m.checked}) AS q_{m.name}",
            f"quantilesTDigestIf(0.5, 0.95)({v}, {m.checked}) AS p_{m.name}",
        ]
    return (
        f"SELECT {', '.join(parts)} FROM responses FINAL "
        "WHERE experiment = {e:String} AND variant != '' "
        f"GROUP BY variant ORDER BY variant LIMIT {MAX_VARIANTS_READ}"
    )


def units_query(sticky: str) -> str:
    """Per unit of randomization (the sticky key; the request where none is known): summed
    cost and requests, then their moments per variant, and the units seen since `since`."""
    first, second = ("session_id", "user_id") if sticky == "session" else ("user_id", "session_id")
    return (
        "SELECT variant, count() AS units, sum(x) AS sx, sum(y) AS sy, sum(x * x) AS sxx, "
        "sum(y * y) AS syy, sum(x * y) AS sxy, countIf(last >= {since:DateTime64(3)}) AS recent "
        "FROM (SELECT r.variant AS variant, if(q.unit != '', q.unit, r.request_id) AS unit, "
        "sum(r.cost_usd) AS x, toFloat64(count()) AS y, max(r.ts) AS last "
        "FROM (SELECT request_id, variant, cost_usd, ts FROM responses FINAL "
        "WHERE experiment = {e:String} AND variant != '') AS r "
        f"LEFT JOIN (SELECT request_id AS rid, if({first} != '', {first}, {second}) AS unit "
        "FROM requests FINAL WHERE request_id IN "
        "(SELECT request_id FROM responses WHERE experiment = {e:String})) AS q "
        "ON q.rid = r.request_id GROUP BY variant, unit) "
        f"GROUP BY variant LIMIT {MAX_VARIANTS_READ}"
    )


def sample_query() -> str:
    """A bounded, hash-chosen sample of the skewed metrics per variant (the same responses
    at every look: the hash of the request id decides)."""
    columns = ", ".join(f"{_f(m.value)} AS {m.name}" for m in CONTINUOUS if m.kind == "skewed")
    return (
        f"SELECT variant, {columns} FROM responses FINAL "
        f"WHERE experiment = {{e:String}} AND variant != '' AND {OK} "
        "AND cityHash64(request_id) % 10000 < {share:UInt32} "
        "LIMIT {n:UInt32} BY variant"
    )


FEEDBACK_QUERY = (
    "SELECT r.variant AS variant, countIf(f.score IS NOT NULL) AS n, "
    "sum(ifNull(f.score, 0)) AS s, sum(ifNull(f.score, 0) * ifNull(f.score, 0)) AS q, "
    "countIf(f.thumbs != 0) AS thumbs, countIf(f.thumbs = 1) AS up "
    "FROM (SELECT request_id, score, thumbs FROM feedback FINAL) AS f "
    "INNER JOIN (SELECT request_id AS rid, variant FROM responses FINAL "
    "WHERE experiment = {e:String} AND variant != '') AS r ON r.rid = f.request_id "
    f"GROUP BY variant LIMIT {MAX_VARIANTS_READ}"
)

JUDGE_QUERY = (
    "SELECT r.variant AS variant, j.check AS check, count() AS n, "
    "sum(toFloat64(j.score)) AS s, sum(toFloat64(j.score) * j.score) AS q "
    "FROM (SELECT request_id, `check`, score FROM judgements FINAL "
    "WHERE verdict IN ('pass', 'fail') AND score > 0) AS j "
    "INNER JOIN (SELECT request_id AS rid, variant FROM responses FINAL "
    "WHERE experiment = {e:String} AND variant != '') AS r ON r.rid = j.request_id "
    f"GROUP BY variant, check ORDER BY check LIMIT {MAX_VARIANTS_READ * MAX_CHECKS}"
)

STATE_QUERY = (
    "SELECT revision, ts, shares, payload FROM experiment_events FINAL "
    "WHERE name = {e:String} ORDER BY revision"
)


@dataclass(frozen=True)
class Definition:
    """What the report needs of the experiment's definition."""

    control: str | None
    shares: dict[str, float]
    sticky: str
    since: datetime  # when the allocation last changed (the SRM check counts from there)
    experiment: Experiment | None = None


def definition_from_rows(rows: list[dict[str, Any]]) -> Definition | None:
    """The newest state, and when the shares last changed, from `experiment_events` rows in
    revision order. None without rows."""
    if not rows:
        return None
    since = EPOCH
    previous: Mapping[str, float] | None = None
    for row in rows:
        shares = {k: float(v) for k, v in row["shares"].items()}
        if shares != previous:
            since = row["ts"] if row["ts"].tzinfo else row["ts"].replace(tzinfo=UTC)
            previous = shares
    newest = Experiment.model_validate_json(rows[-1]["payload"])
    return Definition(newest.control_name, newest.shares(), newest.sticky, since, newest)


def read_definition(client: Any, name: str) -> Definition | None:
    rows = list(client.query(STATE_QUERY, parameters={"e": name}).named_results())
    return definition_from_rows(rows)


def _moments(row: Mapping[str, Any], metric: Metric) -> Moments:
    return Moments(
        int(row[f"c_{metric.name}"]), float(row[f"s_{metric.name}"]), float(row[f"q_{metric.name}"])
    )


def gather(client: Any, name: str, definition: Definition | None) -> dict[str, VariantData]:
    """Every variant's aggregates for the experiment (a few queries, all aggregated)."""
    params: dict[str, Any] = {"e": name}
    data: dict[str, VariantData] = {}
    for row in client.query(main_query(), parameters=params).named_results():
        d = VariantData(responses=int(row["responses"]))
        for m in RATES:
            d.rates[m.name] = (int(row[f"h_{m.name}"]), int(row[f"n_{m.name}"]))
        for m in CONTINUOUS:
            d.moments[m.name] = _moments(row, m)
            low, high = (float(q) for q in row[f"p_{m.name}"])
            d.quantiles[m.name] = (low, high)
        data[row["variant"]] = d
    if not data:
        return data
    since = definition.since if definition else EPOCH
    sticky = definition.sticky if definition else "user"
    params_units = {**params, "since": since}
    for row in client.query(units_query(sticky), parameters=params_units).named_results():
        d = data.setdefault(row["variant"], VariantData())
        d.ratio = UnitMoments(
            int(row["units"]), row["sx"], row["sy"], row["sxx"], row["syy"], row["sxy"]
        )
        d.units = int(row["recent"])
    fewest = min(max(1, d.moments["latency_ms"].n) for d in data.values())
    share = min(10_000, int(10_000 * SAMPLE_PER_VARIANT * 1.5 / fewest) + 1)
    sampled: dict[str, dict[str, list[float]]] = {}
    result = client.query(
        sample_query(), parameters={**params, "share": share, "n": SAMPLE_PER_VARIANT}
    )
    skewed = [m.name for m in CONTINUOUS if m.kind == "skewed"]
    for row in result.named_results():
        per = sampled.setdefault(row["variant"], {n: [] for n in skewed})
        for n in skewed:
            per[n].append(float(row[n]))
    for variant, per in sampled.items():
        if variant in data:
            data[variant].samples = {n: np.asarray(v, dtype=np.float64) for n, v in per.items()}
    for row in client.query(FEEDBACK_QUERY, parameters=params).named_results():
        if row["variant"] in data:
            d = data[row["variant"]]
            d.moments[FEEDBACK_SCORE.name] = Moments(
                int(row["n"]), float(row["s"]), float(row["q"])
            )
            d.rates[THUMBS_UP.name] = (int(row["up"]), int(row["thumbs"]))
    for row in client.query(JUDGE_QUERY, parameters=params).named_results():
        if row["variant"] in data:
            metric = judge_metric(row["check"])
            data[row["variant"]].moments[metric.name] = Moments(
                int(row["n"]), float(row["s"]), float(row["q"])
            )
    return data


def metrics_for(data: Mapping[str, VariantData]) -> list[Metric]:
    """The report's metrics: the fixed ones, then feedback and eval scores where any exist."""
    metrics = [*RATES, *CONTINUOUS, COST]
    if any(
        FEEDBACK_SCORE.name in d.moments and d.moments[FEEDBACK_SCORE.name].n for d in data.values()
    ):
        metrics.append(FEEDBACK_SCORE)
    if any(THUMBS_UP.name in d.rates and d.rates[THUMBS_UP.name][1] for d in data.values()):
        metrics.append(THUMBS_UP)
    checks = sorted({n for d in data.values() for n in d.moments if n.startswith("eval_")})
    metrics += [judge_metric(n[len("eval_") : -len("_score")]) for n in checks]
    return metrics


class NoData(LookupError):
    """No responses of the experiment in the store."""


def build_report(client: Any, name: str) -> Analysis:
    definition = read_definition(client, name)
    data = gather(client, name, definition)
    if not data:
        raise NoData(
            f"no responses of experiment {name!r} in ClickHouse"
            + ("" if definition else " (and no such experiment was ever started)")
        )
    if definition is not None:
        control = definition.control or sorted(data)[0]
        shares = definition.shares
    else:
        control = "control" if "control" in data else sorted(data)[0]
        shares = {v: 1.0 / len(data) for v in data}
    if control not in data:
        raise NoData(f"no responses of the control variant {control!r} of {name!r} yet")
    return analyze(name, control, data, metrics_for(data), shares)


def _finite(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def analysis_json(analysis: Analysis) -> dict[str, Any]:
    """The report as plain JSON (infinite bounds of a young confidence sequence are null)."""
    srm = analysis.srm
    return {
        "experiment": analysis.experiment,
        "control": analysis.control,
        "variants": list(analysis.variants),
        "responses": analysis.responses,
        "expected_shares": analysis.expected_shares,
        "srm": None
        if srm is None
        else {
            "observed": list(srm.observed),
            "expected": list(srm.expected),
            "statistic": _finite(srm.statistic),
            "p_value": srm.p_value,
            "mismatch": srm.mismatch,
        },
        "metrics": [
            {
                "metric": r.metric,
                "variant": r.variant,
                "kind": r.kind,
                "test": r.test,
                "control": r.control,
                "treatment": r.treatment,
                "difference": r.difference.estimate,
                "ci_low": _finite(r.difference.low),
                "ci_high": _finite(r.difference.high),
                "relative": r.relative,
                "p_value": r.p_value,
                "p_adjusted": r.p_adjusted,
                "always_valid_p": r.always_valid_p,
                "always_valid_adjusted": r.always_valid_adjusted,
                "cs_low": _finite(r.cs_low),
                "cs_high": _finite(r.cs_high),
                "n_control": r.n_control,
                "n_treatment": r.n_treatment,
                "significant": r.significant,
                "direction": r.direction,
                "quantiles_control": r.quantiles_control,
                "quantiles_treatment": r.quantiles_treatment,
            }
            for r in analysis.results
        ],
        "verdict": list(analysis.verdict),
    }


def analysis_text(analysis: Analysis) -> str:
    return json.dumps(analysis_json(analysis), default=str)
