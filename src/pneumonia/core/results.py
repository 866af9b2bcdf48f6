"""What the public API's functions return, as types a checker can read: plain dicts at run
time (and JSON files on disk), typed here without importing anything heavy, so that the lean
install can name them too."""

from __future__ import annotations

from typing import Any, Required, TypedDict


class EvaluationResult(TypedDict):
    """What `evaluate` returns (and writes as `metrics.json`)."""

    bundle: str
    architecture: str
    data: str  # the data and split, as a sentence
    split: str
    threshold_rule: str
    temperature: float
    tta: bool
    metrics: dict[str, Any]  # at the stored threshold: roc_auc, sensitivity, specificity, ...
    intervals: dict[str, Any]  # 95%: "bootstrap" (patients resampled) and "exact"
    calibration: dict[str, float]  # ECE and Brier
    guard: dict[str, Any]  # how many images the guard flagged ({"active": False}: no guard)
    subtype: dict[str, Any] | None  # the subtype output's figures (None: no head)
    borderline: dict[str, Any] | None  # answers within the bundle's band (None: no band)
    unreadable: list[dict[str, str]]  # path and reason of every image left out
    mlflow_run: str | None


class TrainingResult(TypedDict, total=False):
    """What `train` returns (and writes as the run's `summary.json`); a DDP worker process
    returns `run_dir` alone."""

    run_dir: Required[str]
    bundle: str
    command: str
    epochs_run: int
    best_epoch: int
    duration_s: float
    mlflow_run: str | None
    lr: float
    device: str
    processes: int
    precision: str
    history: list[dict[str, float]]
    threshold: float
    threshold_rule: str
    temperature: float | None
    validation: dict[str, Any]  # headline metrics on validation at the stored threshold
    onnx: Any  # the ONNX export's record, or False
    guard: dict[str, Any] | None
