"""The public Python API: what a notebook or a library user calls.

    from pneumonia import load_bundle, predict, evaluate, train, load_config

Each is a thin, documented entry over the stage that does the work; everything else in the
package stays importable but is not the documented surface. The types they take and give
(`Bundle`, `Prediction`, `Config`, `EvaluationResult`, `TrainingResult`) are importable from
`pneumonia` too. Nothing here needs PyTorch but `train` (and a `torch` backend): the lean
install (`pip install pneumonia`) loads, predicts and evaluates on ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

from pneumonia.core.config import Config, load_config
from pneumonia.core.options import Scoring
from pneumonia.core.results import EvaluationResult, TrainingResult
from pneumonia.inference.loading import Bundle
from pneumonia.inference.predictions import Prediction

TYPE_NAMES = ("Bundle", "Config", "EvaluationResult", "Prediction", "TrainingResult")
__all__ = ["evaluate", "load_bundle", "load_config", "predict", "train", *TYPE_NAMES]


def load_bundle(
    path: str | Path | None = None, backend: str = "auto", threads: int | None = None
) -> Bundle:
    """Verify and load a bundle folder (None: the shipped model) on the fastest backend it has
    (`auto`: its int8 or float ONNX model on ONNX Runtime, PyTorch only when it has neither);
    `backend` onnx, int8 or torch asks for one."""
    from pneumonia.inference.loading import load_bundle as load

    return load(path, backend, threads)


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
    from pneumonia.inference.predictions import expand_inputs, predict_paths

    items = [images] if isinstance(images, str | Path) else images
    paths = expand_inputs([str(item) for item in items])
    return predict_paths(_bundle(bundle, backend), paths, show=show)


def evaluate(
    data: str | Path,
    bundle: Bundle | str | Path | None = None,
    split: str = "val",
    out: str | Path | None = None,
    backend: str = "auto",
    n_boot: int = 1000,
    show: bool = False,
) -> EvaluationResult:
    """Metrics with 95% intervals of `bundle` (None: the shipped model) on `split` of `data`
    (a manifest, a dataset folder, a MedMNIST .npz or a CSV). Nothing is written unless `out`
    names a folder for `metrics.json`, `predictions.csv` and the figures."""
    from pneumonia.evaluation.evaluate import evaluate as evaluate_split

    folder = None if out is None else Path(out)
    scoring = Scoring(show=show, n_boot=n_boot)
    return evaluate_split(_bundle(bundle, backend), data, split, folder, scoring)


def train(
    cfg: Config | None = None,
    overrides: list[str] | None = None,
    resume: str | Path | None = None,
) -> TrainingResult:
    """Train one model and return the run's summary (its bundle folder included). `cfg`: a
    resolved config (`load_config`); without it, `configs/default.yaml`'s values with
    `overrides` such as `["train.epochs=2"]`. `resume`: a run folder whose training stopped
    (a crash, Ctrl+C): it goes on from its last checkpoint, with its own config."""
    from pneumonia.training.train import train as train_run

    if cfg is not None and overrides:
        raise ValueError("give a resolved cfg or overrides, not both (load_config takes both)")
    where = None if resume is None else Path(resume)
    config = cfg or load_config(None, overrides)
    return train_run(config, where, command="pneumonia.train (Python API)")
