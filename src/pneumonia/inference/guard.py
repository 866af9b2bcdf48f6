"""The out-of-distribution guard: does an input look like the X-rays the model learned from?

Score: the Mahalanobis distance (Lee et al., 2018) of the pooled features the classifier
head reads, to the nearest class mean, with the covariance shared by both classes, measured
in its `components` leading principal directions (whitened) and divided by `components`,
so a training-like image scores about 1. Fitted on training features, clean and as the
model saw them augmented; the threshold is the validation score above which at most
`max_flag_rate` of validation X-rays lie. A flagged image still gets its probability, marked
as not to be trusted.

Stored in the bundle as `guard.safetensors` (center, projection, class means), recorded in
`model.json` under `guard`. Scoring needs NumPy only (the lean path).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from pneumonia.core.outputs import plain_mode

log = logging.getLogger(__name__)
GUARD = "guard.safetensors"
_BLAS = ThreadpoolController()  # found once: limiting it per call then costs microseconds
_BLAS_LOCK = threading.Lock()  # the limit is process-wide: one scoring call sets it at a time
METHOD = "mahalanobis_pca"


@dataclass(frozen=True)
class Guard:
    """A fitted guard: features (N, D) -> scores (N,); in distribution when score <= threshold."""

    center: np.ndarray  # (D,) mean of the training features
    projection: np.ndarray  # (D, k) leading within-class principal directions / sqrt(variance)
    means: np.ndarray  # (classes, k) class means in the whitened space
    threshold: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Mean squared whitened distance to the nearest class mean (about 1 in distribution).
        In float32, as stored: the same numbers at fit time and at inference. On one BLAS
        thread: OpenBLAS's threads spin after a call and took a quarter of the service's
        throughput from ONNX Runtime (docs/monitoring.md)."""
        with _BLAS_LOCK, _BLAS.limit(limits=1, user_api="blas"):
            z = (np.asarray(features, dtype=np.float32) - self.center) @ self.projection
        dist = ((z[:, None, :] - self.means[None, :, :]) ** 2).sum(-1, dtype=np.float64)
        return np.asarray(dist.min(axis=1) / self.projection.shape[1])

    def in_distribution(self, scores: np.ndarray) -> np.ndarray:
        """True where a score is within the threshold (NaN: False)."""
        return np.asarray(scores) <= self.threshold


def fit_guard(
    features: np.ndarray, labels: np.ndarray, components: int = 64, eps: float = 1e-6
) -> Guard:
    """The guard's geometry from training features and label indices (threshold not set)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    classes = np.unique(y)
    if len(x) < 2 * len(classes) or x.ndim != 2:
        raise ValueError(f"need a 2-D feature matrix with several rows per class, got {x.shape}")
    class_means = np.stack([x[y == c].mean(0) for c in classes])
    within = x - class_means[np.searchsorted(classes, y)]
    variance, vectors = np.linalg.eigh(np.cov(within, rowvar=False))
    k = int(min(components, x.shape[1], len(x) - len(classes)))
    top = np.argsort(variance)[::-1][:k]
    projection = vectors[:, top] / np.sqrt(np.maximum(variance[top], 0) + eps)
    center = x.mean(0)
    means = (class_means - center) @ projection
    center, projection, means = (a.astype(np.float32) for a in (center, projection, means))
    return Guard(center, projection, means, float("inf"))


def set_threshold(guard: Guard, val_scores: np.ndarray, max_flag_rate: float) -> Guard:
    """The guard with the threshold that flags at most `max_flag_rate` of `val_scores`."""
    ranked = np.sort(np.asarray(val_scores, dtype=np.float64))
    allowed = int(np.floor(max_flag_rate * len(ranked)))
    threshold = float(ranked[len(ranked) - 1 - allowed])
    return Guard(guard.center, guard.projection, guard.means, threshold)


def save_guard(guard: Guard, path: Path) -> Path:
    """Write the guard's arrays as safetensors (float32; the threshold lives in model.json)."""
    from safetensors.numpy import save_file

    arrays = {"center": guard.center, "projection": guard.projection, "means": guard.means}
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, str(path))
    return plain_mode(path)  # safetensors leaves 0600: a container's user could not read it


def load_guard(path: Path, threshold: float) -> Guard:
    """A guard read back from `save_guard`'s file, with its recorded threshold."""
    from safetensors.numpy import load_file

    arrays = load_file(str(path))
    return Guard(arrays["center"], arrays["projection"], arrays["means"], threshold)


def flag_rates(guard: Guard, scores_by_kind: dict[str, np.ndarray]) -> dict[str, Any]:
    """Share of each kind's images the guard flags, with counts."""
    return {
        kind: {
            "n": len(s),
            "flagged": float(np.mean(~guard.in_distribution(s))) if len(s) else None,
        }
        for kind, s in scores_by_kind.items()
    }
