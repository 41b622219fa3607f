"""Our drift statistics equal Evidently 0.7's on the same rows (Evidently is a dev extra).

Each case runs Evidently's own `ValueDrift` metric (the code its DataDriftPreset runs) on a
DataFrame and llmops.stats.drift on the same values; they must agree to 1e-9 (relative), and
Evidently's default method for a column must be the one `default_method` picks.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry: off in tests

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift

from llmops.stats import drift

TOLERANCE = 1e-9


def _dataset(values: Iterable[Any], categorical: bool) -> Dataset:
    definition = (
        DataDefinition(categorical_columns=["x"])
        if categorical
        else DataDefinition(numerical_columns=["x"])
    )
    return Dataset.from_pandas(pd.DataFrame({"x": list(values)}), data_definition=definition)


def evidently_drift(
    reference: Iterable[Any],
    current: Iterable[Any],
    method: str | None,
    categorical: bool = False,
) -> tuple[float, str]:
    """Evidently's score for column x and the metric's name (which names its method)."""
    metric = ValueDrift(column="x") if method is None else ValueDrift(column="x", method=method)
    report = Report([metric]).run(_dataset(current, categorical), _dataset(reference, categorical))
    [result] = report.dict()["metrics"]
    return float(result["value"]), str(result["metric_name"])


def numeric_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20261202)
    return [
        ("unshifted", rng.normal(size=800), rng.normal(size=300)),
        ("shifted", rng.normal(size=800), rng.normal(0.4, 1.2, size=300)),
        ("large", rng.lognormal(size=5000), rng.lognormal(0.1, size=2000)),
        (
            "few values",
            rng.integers(0, 12, 900).astype(float),
            rng.integers(0, 15, 400).astype(float),
        ),
        ("heavy tail", rng.standard_cauchy(1500), rng.standard_cauchy(700)),
    ]


@pytest.mark.parametrize(("name", "reference", "current"), numeric_cases())
def test_numeric_statistics_equal_evidentlys(
    name: str, reference: np.ndarray, current: np.ndarray
) -> None:
    ks, _ = evidently_drift(reference, current, "ks")
    wasserstein, _ = evidently_drift(reference, current, "wasserstein")
    psi, _ = evidently_drift(reference, current, "psi")
    assert drift.ks_test(reference, current).p_value == pytest.approx(ks, rel=TOLERANCE, abs=1e-300)
    assert drift.wasserstein_normed(reference, current) == pytest.approx(wasserstein, rel=TOLERANCE)
    assert drift.psi(reference, current) == pytest.approx(psi, rel=TOLERANCE)


def categorical_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    letters = list("abcdef")
    return [
        (
            "shifted",
            rng.choice(letters, 900, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05]),
            rng.choice(letters, 300, p=[0.2, 0.2, 0.2, 0.2, 0.1, 0.1]),
        ),
        ("same", rng.choice(letters, 2000), rng.choice(letters, 800)),
        ("new category", rng.choice(letters[:4], 700), rng.choice(letters, 250)),
    ]


@pytest.mark.parametrize(("name", "reference", "current"), categorical_cases())
def test_categorical_statistics_equal_evidentlys(
    name: str, reference: np.ndarray, current: np.ndarray
) -> None:
    chi, _ = evidently_drift(reference, current, "chisquare", categorical=True)
    js, _ = evidently_drift(reference, current, "jensenshannon", categorical=True)
    ours_chi = drift.chi_square_test(Counter(reference.tolist()), Counter(current.tolist()))
    assert ours_chi.p_value == pytest.approx(chi, rel=TOLERANCE, abs=1e-300)
    ours_js = drift.jensen_shannon(Counter(reference.tolist()), Counter(current.tolist()))
    assert ours_js == pytest.approx(js, rel=TOLERANCE)


@pytest.mark.parametrize(
    ("reference_size", "kind", "expected"),
    [
        (500, "numeric", "ks"),
        (1500, "numeric", "wasserstein"),
        (500, "categorical", "chisquare"),
        (1500, "categorical", "jensenshannon"),
    ],
)
def test_the_default_method_is_evidentlys(reference_size: int, kind: str, expected: str) -> None:
    rng = np.random.default_rng(reference_size)
    categorical = kind == "categorical"
    if categorical:
        reference, current = rng.choice(list("abcd"), reference_size), rng.choice(list("abcd"), 200)
        n_unique = 4
    else:
        reference, current = rng.normal(size=reference_size), rng.normal(size=200)
        n_unique = len(set(reference.tolist()) | set(current.tolist()))
    _, name = evidently_drift(reference, current, None, categorical=categorical)
    choice = drift.default_method(kind, reference_size, n_unique)  # type: ignore[arg-type]
    assert choice.method == expected
    labels = {
        "ks": "K-S p_value",
        "wasserstein": "Wasserstein distance (normed)",
        "chisquare": "chi-square p_value",
        "jensenshannon": "Jensen-Shannon distance",
    }
    assert f"method={labels[expected]}" in name, name
