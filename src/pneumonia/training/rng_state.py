"""Exact resume: the random-number generators' states travel with every checkpoint.

Lightning restores weights, optimiser, schedule, callbacks and loop counters, but not the
generators that shuffle batches, draw augmentations and drop units. A run killed after epoch
k and resumed from `last.ckpt` would then draw other batches than the run that was never
stopped, and end with other weights. `RngState` saves Python's, NumPy's and PyTorch's
generator states into the checkpoint. On resume it puts them back when the first epoch
starts and makes the training data iterator again from them: Lightning made that iterator
while setting up (its step estimate for the schedule), from the generators as they were
before the checkpoint was read. The resumed run then draws what the unstopped run drew.
Stored as tensors and plain numbers: checkpoints still load with `weights_only=True`.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

KEY = "rng_states"


def capture(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """The generators' states (the global ones, and the one that shuffles the training data),
    in checkpoint-safe types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(state), "gauss": gauss},
        "loader": loader_generator.get_state() if loader_generator is not None else None,
    }  # fmt: skip


def restore(states: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Put back what `capture` saved."""
    torch.set_rng_state(states["torch"])
    if loader_generator is not None and states.get("loader") is not None:
        loader_generator.set_state(states["loader"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


class RngState(Callback):
    """Saves the generators with each checkpoint; on resume, restores them at the first
    epoch's start and restarts the training data iterator from them."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[KEY] = capture(_loader_generator(trainer))

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = checkpoint.get(KEY)  # checkpoints made before this callback: None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        restore(self._pending, _loader_generator(trainer))
        self._pending = None
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is not None:  # the unstopped run makes its iterator here, after these hooks
            iter(fetcher)


def _loader_generator(trainer: pl.Trainer) -> torch.Generator | None:
    """The generator that shuffles the training data (`XrayDataModule.generator`), if any."""
    return getattr(getattr(trainer, "datamodule", None), "generator", None)
