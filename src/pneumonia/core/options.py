"""How a command scores images: the options `evaluate`, `report`, `compare`, `stress` and
`threshold` share, as one object (the CLI builds it from the same five flags everywhere)."""

from __future__ import annotations

from dataclasses import dataclass

from pneumonia.core.config import TrackingConfig


@dataclass(frozen=True)
class Scoring:
    """Worker processes for decoding (None: one per core), a progress bar or not, bootstrap
    resamples for the intervals (0: none), test-time augmentation or not, and the MLflow
    tracking of the run (None: off)."""

    workers: int | None = None
    show: bool = True
    n_boot: int = 1000
    tta: bool = False
    tracking: TrackingConfig | None = None
