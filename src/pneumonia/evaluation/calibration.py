"""Calibration: temperature scaling fitted on validation logits, ECE, Brier score, reliability.

Temperature scaling divides every logit by one number T > 0 (Guo et al., 2017). It does not
change the ranking (ROC-AUC stays the same) but makes P(PNEUMONIA) mean what it says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.metrics import brier_score_loss, log_loss

from pneumonia.core.errors import PneumoniaError


def logit(probs: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Inverse sigmoid, the probabilities clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(probs, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the negative log-likelihood of sigmoid(logits / T)."""
    labels = np.asarray(labels, dtype=int)
    if len(np.unique(labels)) < 2:
        raise PneumoniaError("temperature scaling needs validation images of both classes")
    z = np.asarray(logits, dtype=float)

    def nll(log_t: float) -> float:
        return float(log_loss(labels, expit(z / np.exp(log_t)), labels=[0, 1]))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Re-scale probabilities as if their logits were divided by `temperature`."""
    return expit(logit(probs) / temperature)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE: the bin-size-weighted gap between mean confidence and accuracy (equal-width bins).

    Binary form: within each bin of P(PNEUMONIA), |mean predicted - observed share|.
    """
    labels = np.asarray(labels, dtype=float)
    probs = np.asarray(probs, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(probs[inside].mean() - labels[inside].mean())
    return float(total)


def calibration_summary(
    labels: np.ndarray, before: np.ndarray, after: np.ndarray
) -> dict[str, float]:
    """ECE and Brier score before and after calibration."""
    return {
        "ece_before": expected_calibration_error(labels, before),
        "ece_after": expected_calibration_error(labels, after),
        "brier_before": float(brier_score_loss(labels, before)),
        "brier_after": float(brier_score_loss(labels, after)),
    }


def reliability_figure(
    labels: np.ndarray, curves: dict[str, np.ndarray], out: Path, bins: int = 10
) -> Path:
    """Observed share of PNEUMONIA against mean predicted probability, per bin and curve."""
    fig = Figure(figsize=(4.8, 4.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect")
    edges = np.linspace(0, 1, bins + 1)
    for name, probs in curves.items():
        which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
        xs = [probs[which == b].mean() for b in range(bins) if (which == b).any()]
        ys = [labels[which == b].mean() for b in range(bins) if (which == b).any()]
        ece = expected_calibration_error(labels, probs)
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="mean P(PNEUMONIA)", ylabel="observed share PNEUMONIA", title="Reliability")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out
