"""Figures: training curves, ROC and PR curves, confusion matrix (PNG, no display needed)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import precision_recall_curve, roc_curve

from pneumonia.core import LABELS


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def read_epoch_metrics(csv_paths: list[Path]) -> dict[str, list[tuple[int, float]]]:
    """Lightning CSV logs, in order -> metric name -> [(epoch, value)], one value per epoch.

    A resumed run logs into a new file; a later file's value for an epoch wins.
    """
    series: dict[str, dict[int, float]] = {}
    for csv_path in csv_paths:
        with csv_path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                epoch = int(float(row["epoch"])) if row.get("epoch") else None
                for key, value in row.items():
                    if key in ("epoch", "step") or not value or epoch is None:
                        continue
                    series.setdefault(key, {})[epoch] = float(value)
    return {k: sorted(v.items()) for k, v in series.items()}


def history_series(history: list[dict[str, float]]) -> dict[str, list[tuple[int, float]]]:
    """A bundle's `training.history` (one dict per epoch) -> metric -> [(epoch, value)]."""
    series: dict[str, list[tuple[int, float]]] = {}
    for row in history:
        for key, value in row.items():
            if key != "epoch" and value is not None:
                series.setdefault(key, []).append((int(row["epoch"]), float(value)))
    return series


def training_curves(series: dict[str, list[tuple[int, float]]], out: Path) -> Path:
    """Loss, accuracy and validation AUC per epoch (from `read_epoch_metrics` or a bundle's
    history via `history_series`)."""
    fig = Figure(figsize=(12, 3.5))
    panels = [("loss", ["train_loss", "val_loss"]), ("accuracy", ["train_acc", "val_acc"])]
    panels.append(("validation ROC-AUC", ["val_auc"]))
    for ax, (title, keys) in zip(fig.subplots(1, 3), panels, strict=True):
        for key in keys:
            points = [(e, v) for e, v in series.get(key, []) if not math.isnan(v)]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return _save(fig, out)


def roc_figure(labels: np.ndarray, probs: np.ndarray, threshold: float, out: Path) -> Path:
    """ROC curve with the operating point marked."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    fpr, tpr, _ = roc_curve(labels, probs)
    ax.plot(fpr, tpr, label="ROC")
    pred = probs >= threshold
    sens = pred[labels == 1].mean() if (labels == 1).any() else math.nan
    fpr_at = pred[labels == 0].mean() if (labels == 0).any() else math.nan
    ax.plot([fpr_at], [sens], "o", color="red", label=f"threshold {threshold:.3g}")
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    ax.legend(loc="lower right")
    return _save(fig, out)


def pr_figure(labels: np.ndarray, probs: np.ndarray, out: Path) -> Path:
    """Precision-recall curve for PNEUMONIA, with the prevalence as the chance line."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    precision, recall, _ = precision_recall_curve(labels, probs)
    ax.plot(recall, precision, label="PR")
    ax.axhline(float(labels.mean()), linestyle=":", color="gray", label="prevalence")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall")
    ax.legend(loc="lower left")
    return _save(fig, out)


def confusion_figure(cm: dict[str, int], out: Path) -> Path:
    """2x2 confusion matrix with counts (rows: truth, columns: prediction)."""
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig = Figure(figsize=(4, 3.6))
    ax = fig.subplots()
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        color = "white" if v > grid.max() / 2 else "black"
        ax.text(j, i, str(v), ha="center", va="center", color=color)
    ax.set_xticks([0, 1], labels=list(LABELS))
    ax.set_yticks([0, 1], labels=list(LABELS))
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _save(fig, out)


def roc_overlay(labels: np.ndarray, curves: dict[str, tuple[np.ndarray, float]], out: Path) -> Path:
    """Several models' ROC curves on the same images, each with its operating point."""
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    for name, (probs, threshold) in curves.items():
        fpr, tpr, _ = roc_curve(labels, probs)
        (line,) = ax.plot(fpr, tpr, label=name)
        pred = probs >= threshold
        ax.plot([pred[labels == 0].mean()], [pred[labels == 1].mean()], "o", color=line.get_color())
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (dots: operating points)")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, out)
