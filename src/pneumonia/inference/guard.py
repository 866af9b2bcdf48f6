"""The out-of-distribution guard: does an input look like the X-rays the model learned from?

Score: the Mahalanobis distance (Lee et al., 2018) of the pooled features the classifier
head reads, to the nearest class mean, with the covariance shared by both classes, measured
in its `components` leading principal directions (whitened) and divided by `components`,
so a training-like image scores about 1. Fitted on training features, clean and as the
model saw them augmented; the threshold is the validation score above which at most
`max_flag_rate` of validation X-rays lie. A flagged image still gets its probability, marked
as not to be trusted.

A second, optional check, `Layout`, looks at the pixels instead: is the frame a whole frontal
chest X-ray the right way round? A logistic regression on 16x16 thumbnails of the contract
square, fitted on the training squares (and their augmented views) against their negatives and
small pieces of them; an image it flags scores above the threshold whatever its distance.

Stored in the bundle as `guard.safetensors` (center, projection, class means; the layout's
arrays where it has one), recorded in `model.json` under `guard`. Scoring needs NumPy only
(the lean path).
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


LAYOUT_GRID = 16


def thumbnails(squares: np.ndarray | list[np.ndarray], grid: int = LAYOUT_GRID) -> np.ndarray:
    """(N, grid * grid) float32 in [0, 1]: each uint8 square (at least `grid` px a side)
    averaged over a `grid` x `grid` lattice of cells."""
    x = np.asarray(squares, dtype=np.float32) / np.float32(255.0)
    if x.ndim != 3 or min(x.shape[1:]) < grid:
        raise ValueError(f"need (N, H, W) squares of at least {grid} px, got {x.shape}")
    rows = np.linspace(0, x.shape[1], grid + 1).astype(int)[:-1]
    cols = np.linspace(0, x.shape[2], grid + 1).astype(int)[:-1]
    sums = np.add.reduceat(np.add.reduceat(x, rows, axis=1), cols, axis=2)
    sizes = np.outer(np.diff([*rows, x.shape[1]]), np.diff([*cols, x.shape[2]]))
    return np.asarray(sums / sizes, dtype=np.float32).reshape(len(x), -1)


@dataclass(frozen=True)
class Layout:
    """Is the frame a whole chest X-ray the right way round? Thumbnails -> logits of "not":
    standardised (`mean`, `scale`), then `coef` and `intercept`; flagged above `threshold`."""

    mean: np.ndarray  # (grid * grid,)
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float

    def logits(self, squares: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """The logit that each uint8 square is a negative or a piece, not a whole X-ray."""
        z = (thumbnails(squares) - self.mean) / self.scale
        return np.asarray(z.astype(np.float64) @ self.coef + self.intercept)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays as `guard.safetensors` stores them."""
        return {
            "layout_mean": self.mean,
            "layout_scale": self.scale,
            "layout_coef": self.coef,
            "layout_intercept": np.array([self.intercept]),
        }


@dataclass(frozen=True)
class Guard:
    """A fitted guard: features (N, D), and with a layout check the contract squares, ->
    scores (N,); in distribution when score <= threshold."""

    center: np.ndarray  # (D,) mean of the training features
    projection: np.ndarray  # (D, k) leading within-class principal directions / sqrt(variance)
    means: np.ndarray  # (classes, k) class means in the whitened space
    threshold: float
    layout: Layout | None = None

    def scores(
        self, features: np.ndarray, squares: np.ndarray | list[np.ndarray] | None = None
    ) -> np.ndarray:
        """The `distances`; with a layout check (which needs the `squares`), an image it flags
        scores at least the threshold plus its logit's margin over the layout's threshold, and
        the others keep their distance."""
        out = self.distances(features)
        if self.layout is None:
            return out
        if squares is None:
            raise ValueError("this guard has a layout check: score it with the squares too")
        margin = self.layout.logits(squares) - self.layout.threshold
        flagged = margin > 0
        out[flagged] = np.maximum(out[flagged], self.threshold + margin[flagged])
        return out

    def distances(self, features: np.ndarray) -> np.ndarray:
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


def top_threshold(scores: np.ndarray, allowed: int) -> float:
    """The threshold that leaves at most `allowed` (>= 0) of `scores` above it."""
    ranked = np.sort(np.asarray(scores, dtype=np.float64))
    return float(ranked[len(ranked) - 1 - min(max(allowed, 0), len(ranked) - 1)])


def set_threshold(
    guard: Guard, val_scores: np.ndarray, max_flag_rate: float, layout_flagged: int = 0
) -> Guard:
    """The guard with the threshold that flags at most `max_flag_rate` of the validation
    images, `layout_flagged` of them already flagged by its layout check (their distances not
    in `val_scores`)."""
    n = len(val_scores) + layout_flagged
    threshold = top_threshold(val_scores, int(np.floor(max_flag_rate * n)) - layout_flagged)
    return Guard(guard.center, guard.projection, guard.means, threshold, guard.layout)


def save_guard(guard: Guard, path: Path) -> Path:
    """Write the guard's arrays as safetensors (float32; the thresholds live in model.json)."""
    from safetensors.numpy import save_file

    arrays = {"center": guard.center, "projection": guard.projection, "means": guard.means}
    arrays |= guard.layout.arrays() if guard.layout is not None else {}
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, str(path))
    return plain_mode(path)  # safetensors leaves 0600: a container's user could not read it


def load_guard(path: Path, threshold: float, layout_threshold: float | None = None) -> Guard:
    """A guard read back from `save_guard`'s file, with its recorded thresholds (the layout
    check's where it has one)."""
    from safetensors.numpy import load_file

    a = load_file(str(path))
    layout = None
    if layout_threshold is not None:
        if "layout_coef" not in a:
            raise ValueError(f"{path}: the record names a layout check the file does not hold")
        layout = Layout(
            a["layout_mean"],
            a["layout_scale"],
            a["layout_coef"],
            float(a["layout_intercept"][0]),
            layout_threshold,
        )
    return Guard(a["center"], a["projection"], a["means"], threshold, layout)


def flag_rates(guard: Guard, scores_by_kind: dict[str, np.ndarray]) -> dict[str, Any]:
    """Share of each kind's images the guard flags, with counts."""
    return {
        kind: {
            "n": len(s),
            "flagged": float(np.mean(~guard.in_distribution(s))) if len(s) else None,
        }
        for kind, s in scores_by_kind.items()
    }
