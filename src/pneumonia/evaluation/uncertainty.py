"""How far to trust a metric: bootstrap intervals (by patient) and exact binomial intervals.

The bootstrap resamples patients with replacement, taking all of a patient's images, because
images of one patient are not independent; with no patient ids each image is its own patient.
Clopper-Pearson intervals for sensitivity and specificity are exact for a proportion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import beta

from pneumonia.evaluation.metrics import HEADLINE, binary_metrics


def clopper_pearson(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) interval for a binomial proportion."""
    if trials == 0:
        return (math.nan, math.nan)
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = (
        1.0
        if successes == trials
        else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    )
    return (low, high)


def _groups(groups: Sequence[str] | None, n: int) -> list[np.ndarray]:
    if groups is None:
        return [np.array([i]) for i in range(n)]
    index: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    return [np.array(ix) for ix in index.values()]


def bootstrap(
    labels: np.ndarray,
    probs: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every number `statistic` returns, resampling groups."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    members = _groups(groups, len(labels))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        picked = rng.integers(0, len(members), len(members))
        ix = np.concatenate([members[g] for g in picked])
        for key, value in statistic(labels[ix], probs[ix]).items():
            draws.setdefault(key, []).append(value)
    out = {}
    for key, values in draws.items():
        finite = np.asarray(values, dtype=float)
        finite = finite[~np.isnan(finite)]
        if len(finite) == 0:
            out[key] = (math.nan, math.nan)
        else:
            low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
            out[key] = (float(low), float(high))
    return out


def metric_intervals(
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """95% bootstrap interval of every headline metric, and exact ones for sens/spec."""

    def headline(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        m = binary_metrics(y, p, threshold, report=False)
        return {k: m[k] for k in HEADLINE}

    intervals = bootstrap(labels, probs, headline, groups, n_boot, seed=seed)
    pred = np.asarray(probs) >= threshold
    y = np.asarray(labels) == 1
    exact = {
        "sensitivity": clopper_pearson(int((pred & y).sum()), int(y.sum())),
        "specificity": clopper_pearson(int((~pred & ~y).sum()), int((~y).sum())),
    }
    return {
        "bootstrap": {k: list(v) for k, v in intervals.items()},
        "clopper_pearson": {k: list(v) for k, v in exact.items()},
        "n_boot": n_boot,
        "resampled": "patients" if groups is not None else "images",
        "level": 0.95,
    }
