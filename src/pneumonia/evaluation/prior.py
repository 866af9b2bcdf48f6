"""The class prior of unlabelled data, and what it does to an operating point.

EM estimation of a new prevalence from calibrated posteriors (Saerens, Latinne and
Decaestecker, 2002), posteriors re-weighted to it, and the expected sensitivity of a
threshold when those posteriors serve as soft labels. Pure NumPy; `monitor` and site
adaptation (`pneumonia.evaluation.site`) use them. Every estimator has a batched form over
the rows of
a 2-D array (bootstrap resamples), identical to the 1-D one row by row.
"""

from __future__ import annotations

import numpy as np


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
