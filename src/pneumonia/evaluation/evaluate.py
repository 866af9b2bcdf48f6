"""`pneumonia evaluate`: a bundle's metrics on one split of any dataset the data layer reads.

Images go through the same door as prediction (file -> grayscale -> contract square), so the
numbers hold for what a user would see. Unreadable images are listed and left out; they
never stop the rest.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss

from pneumonia.core import LABELS, SUBTYPES
from pneumonia.core.config import TrackingConfig
from pneumonia.core.errors import DataError
from pneumonia.core.options import Scoring
from pneumonia.core.results import EvaluationResult
from pneumonia.core.tracking import RunHandle, end_run, log_outputs, start_run
from pneumonia.data.discover import discover
from pneumonia.data.split import COLUMNS, read_manifest
from pneumonia.evaluation.calibration import expected_calibration_error, reliability_figure
from pneumonia.evaluation.metrics import binary_metrics, headline, jsonable
from pneumonia.evaluation.plots import confusion_figure, pr_figure, roc_figure
from pneumonia.evaluation.uncertainty import metric_intervals
from pneumonia.inference.loading import Bundle
from pneumonia.inference.predictions import check_tta, stream_logits, to_probability

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One labelled image to evaluate."""

    path: str
    label: str
    patient: str


def is_manifest(path: Path) -> bool:
    """True for a split manifest (`pneumonia data split`'s CSV columns)."""
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with path.open(newline="", encoding="utf-8") as fh:
        return tuple(next(csv.reader(fh), [])) == COLUMNS


def select_items(data: str | Path, split: str) -> tuple[list[Item], str]:
    """Labelled images of `split` in a manifest or dataset; (items, description of the source).

    A layout without splits (class folders only) is evaluated whole.
    """
    data = Path(data)
    if is_manifest(data):
        pool = [(r.path, r.label, r.patient, r.split) for r in read_manifest(data)]
    else:
        found = discover(data)
        pool = [(s.path, s.label, s.patient, s.split) for s in found.samples]
    splits = sorted({s for *_, s in pool})
    if splits == [""]:
        items = [Item(p, lab, pat) for p, lab, pat, _ in pool]
        return items, f"{data} (no splits; all {len(items)} images)"
    items = [Item(p, lab, pat) for p, lab, pat, s in pool if s == split]
    if not items:
        raise DataError(
            f"{data}: no {split!r} images (splits present: {', '.join(splits)}); pass --split"
        )
    return items, f"{data} split {split!r}"


@dataclass
class Scored:
    """The readable images of a split with their labels and the network's raw logits."""

    source: str
    items: list[Item]
    labels: np.ndarray
    logits: np.ndarray
    unreadable: list[dict[str, str]]
    ood: np.ndarray | None = None  # the guard's scores (NaN without a guard)
    viral: np.ndarray | None = None  # P(viral | pneumonia) (NaN without a subtype head)


def score_split(
    bundle: Bundle, data: str | Path, split: str, scoring: Scoring | None = None
) -> Scored:
    """Read `split` of `data` through the input door and run the network on every image."""
    items, source = select_items(data, split)
    paths = [it.path for it in items]
    raw, ood, errors, viral = stream_logits(bundle, paths, scoring or Scoring())
    good = [i for i, error in enumerate(errors) if error is None]
    unreadable = [
        {"path": items[i].path, "reason": error}
        for i, error in enumerate(errors)
        if error is not None
    ]
    for u in unreadable:
        log.warning("%s: %s (left out)", u["path"], u["reason"])
    if not good:
        raise DataError(f"{source}: none of the {len(items)} images could be read")
    labels = np.array([LABELS.index(items[i].label) for i in good])
    kept = [items[i] for i in good]
    return Scored(source, kept, labels, raw[good], unreadable, ood[good], viral[good])


def evaluate(
    bundle: Bundle,
    data: str | Path,
    split: str,
    out: Path | None = None,
    scoring: Scoring | None = None,
) -> EvaluationResult:
    """Score `bundle` on `split` of `data` at its threshold; with `out`, write JSON, CSV and
    figures there.

    Every headline metric gets a 95% bootstrap interval (patients resampled), sensitivity and
    specificity also an exact Clopper-Pearson one; calibration is measured by ECE and Brier.
    With `scoring.tracking` on, the run goes to MLflow with every file written.
    """
    scoring = scoring or Scoring()
    check_tta(bundle, scoring.tta)
    params = {
        "bundle": str(bundle.path),
        "architecture": bundle.meta.architecture.name,
        "data": str(data),
        "split": split,
        "tta": scoring.tta,
        "bootstrap": scoring.n_boot,
        "threshold": bundle.threshold,
        "threshold_rule": bundle.meta.threshold.rule,
    }
    name = out.name if out is not None else "evaluate"
    tracked = start_run(scoring.tracking or TrackingConfig(enabled=False), name, "evaluate", params)
    try:
        result = _evaluate(bundle, data, split, out, scoring, tracked)
    except BaseException:
        end_run(tracked, ok=False)
        raise
    metrics = {**headline(result["metrics"]), **result["calibration"]}
    written = [] if out is None else sorted(p for p in out.iterdir() if p.is_file())
    log_outputs(tracked, metrics, written)
    end_run(tracked, ok=True)
    return result


def _evaluate(
    bundle: Bundle,
    data: str | Path,
    split: str,
    out: Path | None,
    scoring: Scoring,
    tracked: RunHandle | None,
) -> EvaluationResult:
    n_boot, tta = scoring.n_boot, scoring.tta
    scored = score_split(bundle, data, split, scoring)
    source, labels = scored.source, scored.labels
    probs = to_probability(scored.logits, bundle.temperature)
    patients = [it.patient for it in scored.items]
    metrics = binary_metrics(labels, probs, bundle.threshold)
    if len(np.unique(labels)) < 2:
        log.warning(
            "%s has one class only: ROC-AUC, PR-AUC and balanced accuracy are undefined", source
        )
    result: EvaluationResult = {
        "bundle": str(bundle.path),
        "architecture": bundle.meta.architecture.name,
        "data": source,
        "split": split,
        "threshold_rule": bundle.meta.threshold.rule,
        "temperature": bundle.temperature,
        "tta": tta,
        "metrics": jsonable(metrics),
        "intervals": jsonable(_intervals(labels, probs, bundle.threshold, patients, n_boot)),
        "calibration": _calibration(labels, probs),
        "guard": _guard_result(bundle, scored),
        "subtype": subtype_result(bundle, scored, probs, n_boot),
        "borderline": borderline_result(bundle, labels, probs),
        "unreadable": scored.unreadable,
        "mlflow_run": tracked[1] if tracked else None,
    }
    if out is None:
        return result
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    _write_predictions(out / "predictions.csv", scored, probs, bundle)
    if len(np.unique(labels)) == 2:
        roc_figure(labels, probs, bundle.threshold, out / "roc.png")
        pr_figure(labels, probs, out / "pr.png")
        reliability_figure(labels, {bundle.meta.architecture.name: probs}, out / "reliability.png")
    confusion_figure(metrics["confusion_matrix"], out / "confusion_matrix.png")
    return result


def subtype_result(
    bundle: Bundle, scored: Scored, probs: np.ndarray, n_boot: int
) -> dict[str, Any] | None:
    """The subtype output judged on the split's PNEUMONIA images whose names give it (None
    without a subtype head, or where no name gives it)."""
    if bundle.meta.subtype is None or scored.viral is None:
        return None
    from pneumonia.data.discover import subtype_of
    from pneumonia.evaluation.subtype import subtype_section

    found = [subtype_of(it.path, it.label) for it in scored.items]
    codes = np.array([SUBTYPES.index(s) if s else -1 for s in found])
    if not (codes >= 0).any():
        log.info("%s: no PNEUMONIA file name gives the subtype; no subtype metrics", scored.source)
        return None
    patients = [it.patient for it in scored.items]
    thresholds = (bundle.threshold, bundle.meta.subtype.threshold)
    return subtype_section(scored.labels, codes, probs, scored.viral, thresholds, patients, n_boot)


def borderline_result(
    bundle: Bundle, labels: np.ndarray, probs: np.ndarray
) -> dict[str, Any] | None:
    """How many answers fall within the bundle's borderline band, and how many of the errors
    at the threshold (missed pneumonias, false alarms) are among them (None without a band)."""
    band = bundle.meta.borderline
    if band is None:
        return None
    low, high = band.limits(bundle.threshold)
    inside = np.asarray(band.contains(probs, bundle.threshold), dtype=bool)
    positive = probs >= bundle.threshold
    missed, false_alarm = (labels == 1) & ~positive, (labels == 0) & positive
    return {
        "low": low,
        "high": high,
        "logit": band.logit,
        "answers": int(inside.sum()),
        "share": float(inside.mean()) if len(inside) else float("nan"),
        "missed": int(missed.sum()),
        "missed_within": int((missed & inside).sum()),
        "false_alarms": int(false_alarm.sum()),
        "false_alarms_within": int((false_alarm & inside).sum()),
    }


def _intervals(
    labels: np.ndarray, probs: np.ndarray, threshold: float, patients: list[str], n_boot: int
) -> dict[str, Any]:
    if n_boot <= 0:
        return {}
    return metric_intervals(labels, probs, threshold, patients, n_boot)


def _calibration(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {
        "ece": expected_calibration_error(labels, probs),
        "brier": float(brier_score_loss(labels, probs)),
    }


def _guard_result(bundle: Bundle, scored: Scored) -> dict[str, Any]:
    """How many of the split's images the guard flags (they are still scored and counted)."""
    if bundle.guard is None or scored.ood is None:
        return {"active": False}
    flagged = ~bundle.guard.in_distribution(scored.ood)
    return {
        "active": True,
        "threshold": bundle.guard.threshold,
        "flagged": int(flagged.sum()),
        "flagged_rate": float(flagged.mean()),
        "flagged_by_label": {
            lab: int(flagged[scored.labels == k].sum()) for k, lab in enumerate(LABELS)
        },
    }


def _write_predictions(path: Path, scored: Scored, probs: np.ndarray, bundle: Bundle) -> None:
    """One row per readable image (`borderline` empty without a band); with a subtype head,
    P(viral | pneumonia) and the subtype the name gives and the one the model answers (where
    it answers PNEUMONIA)."""
    ood = scored.ood if scored.ood is not None else np.full(len(probs), np.nan)
    inside = bundle.guard.in_distribution(ood) if bundle.guard is not None else None
    head = bundle.meta.subtype
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        header = ["path", "patient", "label", "probability", "predicted", "borderline"]
        extra = ["subtype", "subtype_probability", "predicted_subtype"] if head else []
        writer.writerow([*header, "in_distribution", "ood_score", *extra])
        band = bundle.meta.borderline
        for i, (it, prob) in enumerate(zip(scored.items, probs, strict=True)):
            predicted = LABELS[int(prob >= bundle.threshold)]
            near = "" if band is None else str(bool(band.contains(prob, bundle.threshold)))
            verdict = ["", ""] if inside is None else [str(bool(inside[i])), f"{ood[i]:.4f}"]
            row = [it.path, it.patient, it.label, f"{prob:.6f}", predicted, near, *verdict]
            if head is not None and scored.viral is not None:
                from pneumonia.data.discover import subtype_of

                p_viral = float(scored.viral[i])
                answer = SUBTYPES[int(p_viral >= head.threshold)] if predicted == LABELS[1] else ""
                row += [subtype_of(it.path, it.label) or "", f"{p_viral:.6f}", answer]
            writer.writerow(row)
