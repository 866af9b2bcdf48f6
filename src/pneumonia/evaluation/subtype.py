"""The subtype output, judged: bacterial against viral on the PNEUMONIA images whose subtype
is known, and the three classes (NORMAL, bacterial, viral) the two outputs make together.

Viral is the positive class of the subtype output (its logit is that of P(viral |
pneumonia)). Intervals resample patients, as every other interval here (`uncertainty`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from pneumonia.core import LABELS, SUBTYPES
from pneumonia.core.meta import SubtypeRecord
from pneumonia.evaluation.metrics import binary_metrics, jsonable
from pneumonia.evaluation.uncertainty import bootstrap
from pneumonia.inference.predictions import to_probability

CLASSES = (LABELS[0], *SUBTYPES)
"""The three classes of the two outputs together: NORMAL, bacterial, viral."""

SUBTYPE_HEADLINE = ("roc_auc", "accuracy", "sensitivity_viral", "specificity_viral")


def subtype_metrics(codes: np.ndarray, p_viral: np.ndarray, threshold: float) -> dict[str, Any]:
    """Bacterial (0) against viral (1) on images whose subtype `codes` are known (>= 0):
    n, viral count, ROC-AUC, accuracy, and sensitivity and specificity for viral."""
    known = np.asarray(codes) >= 0
    m = binary_metrics(np.asarray(codes)[known], np.asarray(p_viral)[known], threshold, False)
    return {
        "n": m["n"],
        "viral": m["positives"],
        "threshold": threshold,
        "roc_auc": m["roc_auc"],
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "sensitivity_viral": m["sensitivity"],
        "specificity_viral": m["specificity"],
    }


def three_class_confusion(
    codes: np.ndarray,
    screen: np.ndarray,
    p_viral: np.ndarray,
    thresholds: tuple[float, float],
) -> dict[str, Any]:
    """Rows: true NORMAL, bacterial, viral (images whose truth is known: NORMAL, or PNEUMONIA
    with a known subtype; `codes` -2 for NORMAL, 0/1 for the subtypes, -1 unknown); columns:
    the answer of the two outputs at (screening, subtype) `thresholds`."""
    codes = np.asarray(codes)
    known = codes != -1
    truth = np.where(codes[known] == -2, 0, codes[known] + 1)
    positive = np.asarray(screen)[known] >= thresholds[0]
    viral = np.asarray(p_viral)[known] >= thresholds[1]
    answer = np.where(positive, np.where(viral, 2, 1), 0)
    matrix = confusion_matrix(truth, answer, labels=[0, 1, 2])
    return {"classes": list(CLASSES), "rows": "truth", "matrix": matrix.tolist()}


def subtype_section(
    labels: np.ndarray,
    codes: np.ndarray,
    screen: np.ndarray,
    p_viral: np.ndarray,
    thresholds: tuple[float, float],
    patients: Sequence[str] | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """What `evaluate` and a bundle record of the subtype output: metrics at the subtype
    threshold with 95% patient-bootstrap intervals, and the three-class confusion. `labels`
    are the screening labels (0/1), `codes` the subtypes (0/1, -1 unknown or NORMAL)."""
    codes = np.asarray(codes)
    metrics = subtype_metrics(codes, p_viral, thresholds[1])
    known = codes >= 0
    intervals: dict[str, Any] = {}
    if n_boot > 0 and metrics["n"] > 0:
        groups = None
        if patients is not None:
            groups = [g for g, k in zip(patients, known, strict=True) if k]

        def headline(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
            found = subtype_metrics(y, p, thresholds[1])
            return {k: found[k] for k in SUBTYPE_HEADLINE}

        draws = bootstrap(codes[known], np.asarray(p_viral)[known], headline, groups, n_boot)
        intervals = {k: list(v) for k, v in draws.items()}
    truth = np.where(np.asarray(labels) == 0, -2, codes)
    return jsonable(
        {
            "metrics": metrics,
            "intervals": intervals,
            "three_class": three_class_confusion(truth, screen, p_viral, thresholds),
        }
    )


def subtype_record(
    labels: np.ndarray,
    codes: np.ndarray,
    screen: np.ndarray,
    subtype_logits: np.ndarray,
    threshold: float,
    patients: Sequence[str],
) -> SubtypeRecord:
    """A bundle's record of its subtype head, with the validation section (`subtype_section`)
    of raw subtype logits at the record's threshold."""
    record = SubtypeRecord()
    p_viral = to_probability(subtype_logits, record.temperature)
    thresholds = (threshold, record.threshold)
    section = subtype_section(labels, codes, screen, p_viral, thresholds, patients)
    record.validation = {"split": "val", **section}
    return record


def headline_line(section: dict[str, Any]) -> str:
    """One line for tables: ROC-AUC (interval), accuracy, viral sensitivity, n."""
    m, ci = section["metrics"], section.get("intervals", {})
    auc = m["roc_auc"]
    if auc is None or (isinstance(auc, float) and math.isnan(auc)):
        return f"n {m['n']}: one subtype only"
    low, high = ci.get("roc_auc", [None, None])
    interval = f" ({low:.3f}-{high:.3f})" if low is not None else ""
    return (
        f"ROC-AUC {auc:.3f}{interval}, accuracy {m['accuracy']:.3f}, viral sensitivity "
        f"{m['sensitivity_viral']:.3f}, specificity {m['specificity_viral']:.3f} "
        f"(n {m['n']}, {m['viral']} viral)"
    )
