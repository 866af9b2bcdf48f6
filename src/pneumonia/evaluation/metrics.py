"""Binary classification metrics at a threshold, all from scikit-learn.

PNEUMONIA (label index 1) is the positive class: sensitivity is the share of pneumonia cases
called PNEUMONIA, specificity the share of normal cases called NORMAL.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from pneumonia.core import LABELS


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def binary_metrics(
    labels: np.ndarray, probs: np.ndarray, threshold: float, report: bool = True
) -> dict[str, Any]:
    """Every headline metric at `threshold`; ranking metrics are NaN with one class only.

    `report=False` leaves out scikit-learn's classification report (for fast resampling).
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    both = len(np.unique(y)) == 2
    out: dict[str, Any] = {
        "n": len(y),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else math.nan,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": float(f1_score(y, pred, zero_division=0.0)),
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }
    if report:
        out["classification_report"] = classification_report(
            y, pred, labels=[0, 1], target_names=list(LABELS), output_dict=True, zero_division=0.0
        )
    return out


HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "f1",
    "roc_auc",
    "pr_auc",
)


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics only (for tables, bundles and comparisons)."""
    return {k: metrics[k] for k in HEADLINE}


def validation_record(
    metrics: dict[str, Any], split: str, data: str | None = None
) -> dict[str, Any]:
    """What a bundle's `model.json` keeps of its validation metrics: the split (and the data
    it came from), the headline metrics, the counts, the threshold and the confusion matrix."""
    record: dict[str, Any] = {"split": split} if data is None else {"split": split, "data": data}
    record.update(jsonable(headline(metrics)))
    record.update({k: metrics[k] for k in ("n", "positives", "threshold", "confusion_matrix")})
    return record


def jsonable(value: Any) -> Any:
    """NaN -> None recursively, so JSON files stay standard."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
