"""Weight averaging for training: an exponential moving average (EMA) of the weights.

Lightning's `WeightAveraging` callback keeps the average in a `torch.optim.swa_utils.
AveragedModel`, validates on it, stores it as the checkpoint's `state_dict` (so the best
checkpoint, and the bundle made from it, hold the averaged weights) and copies it into the
model when training ends. Two things are added here for two-stage fine-tuning:

- the average starts with the first step of `start_epoch` (the end of the head-only stage), not
  from the pretrained weights with a random head;
- until that first update, validation and checkpoints use the weights being trained, because
  an average of nothing is the untrained model.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_avg_fn


class EMAAveraging(WeightAveraging):
    """EMA of every parameter and buffer (batch-norm statistics too), updated every step."""

    def __init__(self, decay: float, start_epoch: int = 0) -> None:
        super().__init__(use_buffers=True, avg_fn=get_ema_avg_fn(decay))
        self.decay = decay
        self.start_epoch = start_epoch
        self._epoch = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch = trainer.current_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Every optimizer step from `start_epoch` on; never at an epoch's end."""
        return step_idx is not None and self._epoch >= self.start_epoch

    def started(self) -> bool:
        """True once the average holds at least one update."""
        average = self._average_model
        return average is not None and int(average.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.started():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
