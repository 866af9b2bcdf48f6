"""The public Python API: what a notebook or a library user calls.

    from pneumonia import load_bundle, predict, evaluate, train, load_config

Each is a thin, documented entry over the stage that does the work; everything else in the
package stays importable but is not the documented surface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pneumonia.core.bundle import Bundle
from pneumonia.core.config import Config, load_config
from pneumonia.modeling.inference import Prediction
from pneumonia.modeling.loading import load_bundle

__all__ = ["evaluate", "load_bundle", "load_config", "predict", "train"]


def _bundle(bundle: Bundle | str | Path | None, backend: str) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle, backend)


def predict(
    images: str | Path | list[str | Path],
    bundle: Bundle | str | Path | None = None,
    backend: str = "auto",
    show: bool = False,
) -> list[Prediction]:
    """Predictions for image files, folders or globs: P(PNEUMONIA), label, and whether the
    input looks like a pediatric frontal chest X-ray. `bundle`: a loaded bundle, a bundle
    folder, or None for the shipped model. An unreadable image gets an error, never an
    exception."""
    from pneumonia.modeling.inference import expand_inputs, predict_paths

    items = [images] if isinstance(images, str | Path) else images
    paths = expand_inputs([str(item) for item in items])
    return predict_paths(_bundle(bundle, backend), paths, show=show)


def evaluate(
    data: str | Path,
    bundle: Bundle | str | Path | None = None,
    split: str = "val",
    out: str | Path = "reports/evaluate",
    backend: str = "auto",
    n_boot: int = 1000,
    show: bool = False,
) -> dict[str, Any]:
    """Metrics with 95% intervals of `bundle` (None: the shipped model) on `split` of `data`
    (a manifest, a dataset folder, a MedMNIST .npz or a CSV), written into `out`."""
    from pneumonia.evaluation.evaluate import evaluate as evaluate_split

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return evaluate_split(_bundle(bundle, backend), data, split, out, show=show, n_boot=n_boot)


def train(cfg: Config | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train one model and return the run's summary (its bundle folder included). `cfg`: a
    resolved config (`load_config`); without it, `configs/default.yaml`'s values with
    `overrides` such as `["train.epochs=2"]`."""
    from pneumonia.training.train import train as train_run

    if cfg is not None and overrides:
        raise ValueError("give a resolved cfg or overrides, not both (load_config takes both)")
    return train_run(cfg or load_config(None, overrides), command="pneumonia.train (Python API)")
