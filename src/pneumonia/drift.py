"""Drift statistics for `monitor`: population stability, two-sample tests, and the class prior
of unlabelled data by EM (Saerens, Latinne and Decaestecker, 2002).

All functions are pure NumPy/SciPy on arrays; `pneumonia.monitor` decides what they mean.
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


def adjust_posteriors(
    probs: np.ndarray, old_prior: float, new_prior: float | np.ndarray
) -> np.ndarray:
    """P(positive | x) under `new_prior` (a number, or one per row of `probs` as a column),
    from posteriors calibrated under `old_prior`."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    pos = p * new_prior / old_prior
    neg = (1 - p) * (1 - new_prior) / (1 - old_prior)
    return np.asarray(pos / (pos + neg))


def em_prior(
    probs: np.ndarray, old_prior: float, tol: float = 1e-6, max_iter: int = 1000
) -> tuple[float, int]:
    """The positive-class prior of unlabelled data whose calibrated posteriors (under
    `old_prior`) are `probs`, by EM: (prior, iterations). Assumes only the prior moved
    (label shift): p(x | class) is what the model was calibrated on."""
    priors, steps = em_priors(np.asarray(probs)[None], old_prior, tol, max_iter)
    return float(priors[0]), int(steps[0])


def threshold_for_sensitivity(
    probs: np.ndarray, weights: np.ndarray, target: float
) -> tuple[float, float]:
    """(highest threshold on `probs` whose expected sensitivity reaches `target`, that
    sensitivity), where `weights` are each image's probability of being positive (the
    prior-adjusted posteriors): expected sensitivity(t) = sum(w [p >= t]) / sum(w)."""
    values, reached = thresholds_for_sensitivity(
        np.asarray(probs)[None], np.asarray(weights)[None], target
    )
    return float(values[0]), float(reached[0])


def expected_sensitivity(probs: np.ndarray, weights: np.ndarray, threshold: float) -> float:
    """Expected sensitivity at `threshold` with soft labels `weights` (see above)."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w[np.asarray(probs) >= threshold].sum() / max(w.sum(), 1e-12))


def em_priors(
    probs: np.ndarray, old_prior: float, tol: float = 1e-6, max_iter: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """`em_prior` for every row of a 2-D array of posteriors at once (each row one batch,
    e.g. a bootstrap resample): (priors, iterations); each row stops when its own estimate
    has converged."""
    p = np.asarray(probs, dtype=np.float64)
    prior = np.full(len(p), float(old_prior))
    steps = np.full(len(p), max_iter)
    active = np.arange(len(p))
    for step in range(1, max_iter + 1):
        new = adjust_posteriors(p[active], old_prior, prior[active, None]).mean(axis=1)
        done = np.abs(new - prior[active]) < tol
        prior[active] = new
        steps[active[done]] = step
        active = active[~done]
        if not len(active):
            break
    return prior, steps


def thresholds_for_sensitivity(
    probs: np.ndarray, weights: np.ndarray, target: float
) -> tuple[np.ndarray, np.ndarray]:
    """`threshold_for_sensitivity` for every row of 2-D `probs` and `weights`: (thresholds,
    expected sensitivities there)."""
    p, w = np.asarray(probs), np.asarray(weights)
    order = np.argsort(-p, axis=1)
    p, w = np.take_along_axis(p, order, 1), np.take_along_axis(w, order, 1)
    reached = np.cumsum(w, axis=1) / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    k = np.minimum((reached < target - 1e-12).sum(axis=1), p.shape[1] - 1)
    rows = np.arange(len(p))
    return p[rows, k], reached[rows, k]
