"""Drift statistics for `monitor`: population stability and two-sample tests (the class prior
of unlabelled data is `pneumonia.evaluation.prior`'s).

All functions are pure NumPy/SciPy on arrays; `pneumonia.monitoring.monitor` decides what they mean.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest, ks_2samp

PSI_WATCH, PSI_ALERT = 0.1, 0.25  # the usual reading: < 0.1 stable, > 0.25 a major shift


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`, on the reference's
    deciles (bins of equal reference mass); empty bins get half a count (no infinities)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    p = np.maximum(ref_counts, 0.5) / max(len(ref), 1)
    q = np.maximum(cur_counts, 0.5) / max(len(cur), 1)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    result = ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def rate_pvalue(successes: int, n: int, expected: float) -> float:
    """One-sided binomial p-value that a rate of `successes`/`n` exceeds `expected`."""
    if n == 0:
        return 1.0
    return float(binomtest(successes, n, expected, alternative="greater").pvalue)
