"""Operating points: the decision threshold on P(PNEUMONIA), chosen on validation data only.

Rules:
- `target_sensitivity`: the highest threshold whose sensitivity reaches the target, hence the
  best specificity at that sensitivity (the screening rule; default target 0.99);
- `youden`: the threshold maximising sensitivity + specificity - 1;
- `cost`: the threshold minimising `cost_ratio * missed pneumonia + false alarms`;
- `fixed`: a threshold given by hand.

A chosen threshold sits halfway between the deciding validation score and the next lower one,
so tiny numeric differences at inference cannot flip a validation case.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy.stats.mstats import hdquantiles
from sklearn.metrics import roc_curve

from pneumonia.core.errors import PneumoniaError

if TYPE_CHECKING:
    from pneumonia.core.config import OperatingConfig
    from pneumonia.core.meta import Calibration, Threshold

Rule = Literal["target_sensitivity", "youden", "cost", "fixed"]
EPS = 1e-7


class OperatingPointError(PneumoniaError):
    """Validation data cannot support the requested operating point."""


def _check(labels: np.ndarray, probs: np.ndarray) -> None:
    if len(labels) != len(probs) or len(labels) == 0:
        raise OperatingPointError("need one probability per validation label, and some labels")
    counts = np.bincount(labels.astype(int), minlength=2)
    if counts.min() == 0:
        missing = "NORMAL" if counts[0] == 0 else "PNEUMONIA"
        raise OperatingPointError(
            f"the validation set has no {missing} images; a threshold needs both classes"
        )


def _below(probs: np.ndarray, score: float) -> float:
    """Halfway between `score` and the highest probability strictly below it."""
    lower = probs[probs < score]
    below = float(lower.max()) if len(lower) else 0.0
    return float(np.clip((score + below) / 2, EPS, 1 - EPS))


def min_positives(target: float) -> int:
    """Positives needed so that one missed case still leaves sensitivity >= target."""
    return math.ceil(1 / (1 - target) - 1e-9) if target < 1 else math.inf  # type: ignore[return-value]


def threshold_for_sensitivity(
    labels: np.ndarray, probs: np.ndarray, target: float, smooth: bool = False
) -> float:
    """Highest threshold with sensitivity >= `target` on these data.

    With `smooth`, the (1 - target) quantile of the positives' scores by the Harrell-Davis
    estimator: a weighted mean of the order statistics around that rank instead of the one
    score that happens to sit there, so it varies less from one validation sample to another.
    """
    _check(labels, probs)
    if not 0 < target <= 1:
        raise OperatingPointError(f"target sensitivity must be in (0, 1], got {target}")
    pos = np.sort(probs[labels == 1])[::-1]
    need = min_positives(target)
    if target < 1 and len(pos) < need:
        raise OperatingPointError(
            f"only {len(pos)} PNEUMONIA images in the validation set: one missed case moves "
            f"sensitivity by {100 / len(pos):.1f} points, too coarse to aim at {target:g}; "
            f"use at least {need} (a larger data.val_fraction) or a lower target"
        )
    if smooth and target < 1:
        quantile = float(np.asarray(hdquantiles(pos, prob=[1 - target]))[0])
        return float(np.clip(quantile, EPS, 1 - EPS))
    k = math.ceil(target * len(pos) - 1e-9)
    return _below(probs, float(pos[k - 1]))


def youden_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1."""
    _check(labels, probs)
    fpr, tpr, thresholds = roc_curve(labels, probs)
    best = int(np.argmax(tpr - fpr))
    return _below(probs, float(min(thresholds[best], 1.0)))


def cost_threshold(labels: np.ndarray, probs: np.ndarray, cost_ratio: float) -> float:
    """Threshold minimising `cost_ratio * FN + FP` (a miss costs `cost_ratio` false alarms)."""
    _check(labels, probs)
    if cost_ratio <= 0:
        raise OperatingPointError(f"cost ratio must be positive, got {cost_ratio}")
    fpr, tpr, thresholds = roc_curve(labels, probs)
    n_pos, n_neg = int(labels.sum()), int(len(labels) - labels.sum())
    cost = cost_ratio * (1 - tpr) * n_pos + fpr * n_neg
    best = int(np.argmin(cost))
    return _below(probs, float(min(thresholds[best], 1.0)))


def rates(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Sensitivity, specificity and counts at `threshold` (PNEUMONIA when p >= threshold)."""
    pred = probs >= threshold
    pos, neg = labels == 1, labels == 0
    return {
        "sensitivity": float(pred[pos].mean()),
        "specificity": float((~pred[neg]).mean()),
        "positives": int(pos.sum()),
        "negatives": int(neg.sum()),
    }


def choose_threshold(
    labels: np.ndarray,
    probs: np.ndarray,
    rule: Rule,
    target_sensitivity: float = 0.99,
    cost_ratio: float = 10.0,
    fixed: float = 0.5,
    smooth: bool = False,
) -> tuple[float, dict[str, Any]]:
    """(threshold, detail) for `rule`; detail records the rule's inputs and validation rates."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if rule == "target_sensitivity":
        value = threshold_for_sensitivity(labels, probs, target_sensitivity, smooth)
        detail: dict[str, Any] = {"target_sensitivity": target_sensitivity, "smooth": smooth}
    elif rule == "youden":
        value, detail = youden_threshold(labels, probs), {}
    elif rule == "cost":
        value, detail = cost_threshold(labels, probs, cost_ratio), {"cost_ratio": cost_ratio}
    else:
        value, detail = fixed, {}
    _check(labels, probs)
    return value, {**detail, "on": "validation", **rates(labels, probs, value)}


def choose_over_views(
    labels: np.ndarray, views: dict[str, np.ndarray], cfg: OperatingConfig
) -> tuple[float, dict[str, Any]]:
    """The configured rule over several views of the same validation images (clean first).

    `pooled` applies the rule once to every view's scores together; `worst` applies it to each
    view and keeps the lowest threshold, the one that meets the rule on every view. The rule's
    own data checks use the clean view alone (views of one image are not independent cases).
    The detail records the clean-only value and the rates on every view.
    """
    labels = np.asarray(labels, dtype=int)
    args = (cfg.rule, cfg.target_sensitivity, cfg.cost_ratio, cfg.fixed, cfg.smooth)
    clean_value, detail = choose_threshold(labels, next(iter(views.values())), *args)
    if len(views) == 1:
        return clean_value, detail
    if cfg.pool == "pooled":
        pooled = np.concatenate(list(views.values()))
        value, _ = choose_threshold(np.tile(labels, len(views)), pooled, *args)
    else:
        value = min(choose_threshold(labels, p, *args)[0] for p in views.values())
    detail.update(rates(labels, next(iter(views.values())), value))
    detail.update(
        {
            "views": list(views),
            "pool": cfg.pool,
            "clean_only_value": clean_value,
            "per_view": {name: rates(labels, p, value) for name, p in views.items()},
        }
    )
    return value, detail


def check_validation(labels: np.ndarray, cfg: OperatingConfig) -> None:
    """Fail before training when the validation set cannot support the configured rule."""
    _check(np.asarray(labels, dtype=int), np.zeros(len(labels)))
    positives = int(np.sum(labels))
    if cfg.rule == "target_sensitivity" and cfg.target_sensitivity < 1:
        need = min_positives(cfg.target_sensitivity)
        if positives < need:
            raise OperatingPointError(
                f"the validation set has {positives} PNEUMONIA images; operating.rule="
                f"target_sensitivity at {cfg.target_sensitivity:g} needs at least {need} "
                "(raise data.val_fraction, lower operating.target_sensitivity, or pick "
                "another operating.rule)"
            )


def fit_operating_point(
    labels: np.ndarray,
    logits: np.ndarray,
    cfg: OperatingConfig,
    view_logits: dict[str, np.ndarray] | None = None,
) -> tuple[Threshold, Calibration | None, np.ndarray]:
    """Calibrate (if asked) on the clean logits, then choose the threshold on the calibrated
    validation scores: clean alone, or with the shifted views in `view_logits` (`cfg.pool`).

    Takes the network's raw validation logits. Returns the threshold, the calibration, and
    the clean validation probabilities as inference will compute them.
    """
    from pneumonia.core.meta import Calibration, Threshold
    from pneumonia.evaluation.calibration import calibration_summary, fit_temperature
    from pneumonia.inference.predictions import to_probability

    labels = np.asarray(labels, dtype=int)
    z = np.asarray(logits, dtype=np.float64)
    calibration, temperature, probs = None, 1.0, to_probability(z)
    if cfg.calibrate:
        temperature = fit_temperature(z, labels)
        calibrated = to_probability(z, temperature)
        summary = calibration_summary(labels, probs, calibrated)
        calibration, probs = Calibration(temperature=temperature, **summary), calibrated
    views = {"clean": probs}
    for name, shifted in (view_logits or {}).items():
        views[name] = to_probability(shifted, temperature)
    value, detail = choose_over_views(labels, views, cfg)
    return Threshold(value=value, rule=cfg.rule, detail=detail), calibration, probs
