"""Figures and the epoch series they are drawn from."""

from pathlib import Path

import numpy as np
from PIL import Image

from pneumonia.evaluation.plots import (
    confusion_figure,
    history_series,
    pr_figure,
    read_epoch_metrics,
    roc_figure,
    roc_overlay,
    training_curves,
)


def test_a_resumed_runs_later_log_wins_for_an_epoch(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("epoch,step,val_auc,train_loss\n0,10,0.8,\n0,10,,0.5\n1,20,0.85,\n")
    second.write_text("epoch,step,val_auc\n1,20,0.9\n2,30,0.95\n")  # epoch 1 again, resumed
    series = read_epoch_metrics([first, second])
    assert series["val_auc"] == [(0, 0.8), (1, 0.9), (2, 0.95)]
    assert series["train_loss"] == [(0, 0.5)] and "step" not in series


def test_history_series_skips_missing_values() -> None:
    history = [
        {"epoch": 0.0, "val_auc": 0.7, "lr": None},
        {"epoch": 1.0, "val_auc": 0.8, "lr": 1e-3},
    ]
    assert history_series(history) == {"val_auc": [(0, 0.7), (1, 0.8)], "lr": [(1, 1e-3)]}


def test_every_figure_is_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    probs = np.clip(labels * 0.6 + rng.random(80) * 0.4, 0, 1)
    paths = [
        roc_figure(labels, probs, 0.5, tmp_path / "roc.png"),
        pr_figure(labels, probs, tmp_path / "pr.png"),
        confusion_figure({"tn": 30, "fp": 5, "fn": 2, "tp": 43}, tmp_path / "cm.png"),
        roc_overlay(labels, {"a": (probs, 0.5), "b": (1 - probs, 0.5)}, tmp_path / "o.png"),
        training_curves(
            {"val_auc": [(0, 0.8), (1, 0.9)], "train_loss": [(0, 0.5)]}, tmp_path / "c.png"
        ),
    ]
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] > 200
