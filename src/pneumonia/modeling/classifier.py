"""The LightningModule: one registry model, one logit, BCE, and validation ROC-AUC; with a
subtype head, a second logit, P(viral | pneumonia), trained by BCE on the PNEUMONIA images
whose subtype is known (the others are masked out of that loss).

Two-stage fine-tuning: for `freeze_epochs` epochs only the classifier head trains (the
backbone is frozen, its batch-norm statistics too); then everything trains, the backbone at
`lr * backbone_lr_scale`. With `consistency` (and `data.pairs`), each step also pulls the
logits of other renderings of training images (originals) onto their copies'. Validation
gathers every probability (across processes under DDP) and scores ROC-AUC with
scikit-learn, the number checkpoints and early stopping follow.
Progressive resizing (`progressive_sizes`): early epochs train on batches downsampled
(antialiased) to a smaller side, cheaper steps; later epochs and validation use the full size.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch
from lightning import LightningModule
from sklearn.metrics import roc_auc_score
from torch import nn

from pneumonia.core.config import TrainConfig

log = logging.getLogger(__name__)


def classifier_head(model: nn.Module) -> nn.Module:
    """The final classification layer (timm's `get_classifier`, the same on our CNNs)."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Module):
        raise TypeError(f"{type(model).__name__} has no get_classifier()")
    return head


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone, head) parameters."""
    head_ids = {id(p) for p in classifier_head(model).parameters()}
    params = list(model.parameters())
    return [p for p in params if id(p) not in head_ids], [p for p in params if id(p) in head_ids]


def stage_parameter_names(model: nn.Module) -> list[list[str]]:
    """Parameter names per stage, input side first (timm's `group_matcher(coarse=True)`)."""
    from timm.models import group_parameters

    matcher = getattr(model, "group_matcher", None)
    if not callable(matcher):
        raise TypeError(f"{type(model).__name__} has no group_matcher()")
    groups = group_parameters(model, matcher(coarse=True))
    return [groups[k] for k in sorted(groups)]


def freeze_stages(model: nn.Module, count: int) -> list[nn.Parameter]:
    """Freeze the first `count` stages for the whole run; their batch norms keep their stats."""
    if count <= 0:
        return []
    stages = stage_parameter_names(model)
    if count >= len(stages):
        raise ValueError(f"train.frozen_stages={count}: the model has {len(stages)} stages")
    names = {n for stage in stages[:count] for n in stage}
    frozen = [p for n, p in model.named_parameters() if n in names]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def safe_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC-AUC, or NaN when only one class is present."""
    if len(np.unique(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, probs))


class XrayClassifier(LightningModule):
    """Binary NORMAL/PNEUMONIA classifier around a registry model: one logit, or two when
    `subtype_pos_weight` is given (the model then has two outputs: screening, subtype)."""

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        pos_weight: float | None,
        subtype_pos_weight: float | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.lr = cfg.lr  # the LR finder reads and sets this attribute
        self.always_frozen = {id(p) for p in freeze_stages(model, cfg.frozen_stages)}
        weight = torch.tensor([pos_weight]) if pos_weight is not None else None
        self.loss = nn.BCEWithLogitsLoss(pos_weight=weight)
        self.subtype = subtype_pos_weight is not None
        sub_weight = torch.tensor([subtype_pos_weight or 1.0])
        self.subtype_loss = nn.BCEWithLogitsLoss(pos_weight=sub_weight)
        self._val_subtype: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._train_correct = 0
        self._train_seen = 0
        self._epoch_started = time.perf_counter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Screening logits, shape (N,)."""
        return self.outputs(x)[:, 0]

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Every output, shape (N, outputs): screening, then subtype when the model has it."""
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).flatten(1)

    def subtype_term(self, out: torch.Tensor, s: torch.Tensor) -> torch.Tensor | None:
        """The subtype loss on the images whose subtype is known (None without a head or
        when the batch has none)."""
        known = s >= 0
        if not self.subtype or not bool(known.any()):
            return None
        return self.subtype_loss(out[known, 1], s[known].float())

    def backbone_frozen(self) -> bool:
        """True during stage 1 of two-stage fine-tuning."""
        return self.current_epoch < self.cfg.freeze_epochs

    def train_size(self) -> int | None:
        """This epoch's training input side when `progressive_sizes` lowers it, else None."""
        sizes = self.cfg.progressive_sizes
        return sizes[self.current_epoch] if self.current_epoch < len(sizes) else None

    def on_fit_start(self) -> None:
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        frozen = self.backbone_frozen()
        backbone, _ = split_parameters(self.model)
        for p in backbone:
            p.requires_grad_(not frozen and id(p) not in self.always_frozen)
        if self.current_epoch == self.cfg.freeze_epochs and self.cfg.freeze_epochs:
            log.info("epoch %d: backbone unfrozen (stage 2)", self.current_epoch)
        if self.current_epoch < len(self.cfg.progressive_sizes):
            log.info("epoch %d: training at %d px", self.current_epoch, self.train_size())
        self._train_correct = self._train_seen = 0
        self._epoch_started = time.perf_counter()

    def on_train_batch_start(self, batch: Any, idx: int) -> None:
        every = self.backbone_frozen() or self.cfg.freeze_batchnorm
        for m in self.model.modules():  # frozen layers keep their batch-norm statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                weight = getattr(m, "weight", None)
                if every or (weight is not None and id(weight) in self.always_frozen):
                    m.eval()

    def sized(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch at this epoch's side (progressive resizing: smaller, antialiased)."""
        size = self.train_size()
        if size is None or size == x.shape[-1]:
            return x
        return nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)

    def consistency_term(self, pairs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """mean((z_other - z_copy)^2) over a batch of pairs, the copy's logit held fixed: the
        other rendering is pulled onto the answer its copy gets."""
        copy, other = self.sized(pairs[0]), self.sized(pairs[1])
        z = self(torch.cat([copy, other]))
        z_copy, z_other = z[: len(copy)].detach(), z[len(copy) :]
        return (z_other - z_copy).pow(2).mean()

    def training_step(
        self, batch: tuple[torch.Tensor, ...] | dict[str, tuple[torch.Tensor, ...]], idx: int
    ) -> torch.Tensor:
        pairs = batch.get("pairs") if isinstance(batch, dict) else None
        images = batch["images"] if isinstance(batch, dict) else batch  # dict: with data.pairs
        x, y, s = images
        out = self.outputs(self.sized(x))
        logits = out[:, 0]
        eps = self.cfg.label_smoothing
        loss = self.loss(logits, y.float() * (1 - eps) + eps / 2)
        subtype = self.subtype_term(out, s)
        if subtype is not None:
            loss = loss + self.cfg.subtype_weight * subtype
        if pairs is not None:
            consistency = self.consistency_term(pairs)
            n = len(pairs[0])
            self.log("train_consistency", consistency, on_step=False, on_epoch=True, batch_size=n)
            loss = loss + self.cfg.consistency * consistency
        self._train_correct += int(((logits > 0).long() == y).sum())
        self._train_seen += len(y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        acc = self._train_correct / max(1, self._train_seen)
        self.log("train_acc", acc, sync_dist=True)
        head_lr = self.trainer.optimizers[0].param_groups[1]["lr"]
        self.log("lr", head_lr, sync_dist=True)
        m = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        keys = ("train_loss", "train_consistency", "train_acc", "val_loss", "val_acc", "val_auc")
        shown = "  ".join(f"{k} {m[k]:.4f}" for k in keys if k in m)
        took = time.perf_counter() - self._epoch_started
        if self.trainer.is_global_zero:  # once, not once per DDP process
            log.info("epoch %d: %s  lr %.2g  (%.0f s)", self.current_epoch, shown, head_lr, took)

    def validation_step(self, batch: tuple[torch.Tensor, ...], idx: int) -> None:
        x, y, s = batch
        out = self.outputs(x)
        logits = out[:, 0]
        self.log("val_loss", self.loss(logits, y.float()), on_epoch=True, prog_bar=True)
        self._val.append((torch.sigmoid(logits).detach().float(), y.detach()))
        if self.subtype:
            self._val_subtype.append((torch.sigmoid(out[:, 1]).detach().float(), s.detach()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        p, y = self._gathered(self._val)
        acc = float(((p >= 0.5).astype(int) == y).mean())
        self.log("val_acc", acc, prog_bar=True)
        self.log("val_auc", safe_auc(y, p), prog_bar=True)
        if self._val_subtype:  # the subtype output on the images whose subtype is known
            p, codes = self._gathered(self._val_subtype)
            self.log("val_subtype_auc", safe_auc(codes[codes >= 0], p[codes >= 0]))

    def _gathered(
        self, pairs: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, targets) of one validation epoch from every process; `pairs` is
        emptied."""
        probs = torch.cat([p for p, _ in pairs])
        targets = torch.cat([t for _, t in pairs])
        pairs.clear()
        if self.trainer.world_size > 1:
            probs = torch.as_tensor(self.all_gather(probs)).reshape(-1)
            targets = torch.as_tensor(self.all_gather(targets)).reshape(-1)
        return probs.cpu().numpy(), targets.cpu().numpy()

    def configure_optimizers(self) -> Any:
        backbone, head = split_parameters(self.model)
        lrs = [self.lr * self.cfg.backbone_lr_scale, self.lr]
        groups = [{"params": backbone, "lr": lrs[0]}, {"params": head, "lr": lrs[1]}]
        opt: torch.optim.Optimizer
        if self.cfg.optimizer == "sgd":
            opt = torch.optim.SGD(
                groups, momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay
            )
        else:
            opt = torch.optim.AdamW(groups, weight_decay=self.cfg.weight_decay)
        if self.cfg.schedule == "constant":
            return opt
        steps = int(self.trainer.estimated_stepping_batches)
        sched: torch.optim.lr_scheduler.LRScheduler
        if self.cfg.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lrs, total_steps=steps)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
