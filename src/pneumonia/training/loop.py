"""The Lightning side of a training run: the `Trainer` as `train` wants it (loggers, profiler,
limits), the LR finder, and the per-epoch table the run folder keeps."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from lightning import Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger
from lightning.pytorch.profilers import AdvancedProfiler, Profiler, SimpleProfiler

from pneumonia.core.config import Config
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.tracking import RunHandle
from pneumonia.evaluation.plots import read_epoch_metrics
from pneumonia.modeling.classifier import XrayClassifier
from pneumonia.modeling.datamodule import XrayDataModule

log = logging.getLogger(__name__)
EPOCH_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "lr")
OPTIONAL_COLUMNS = ("val_subtype_auc", "train_consistency")
"""Columns of `metrics.csv` only for runs that log them (the subtype head, data.pairs)."""


def training_logger(handle: RunHandle | None) -> MLFlowLogger | None:
    """Lightning's MLFlowLogger writing into a run from `start_run` (None: tracking off)."""
    if handle is None:
        return None
    return MLFlowLogger(tracking_uri=handle[0], run_id=handle[1])


def make_trainer(
    cfg: Config, run: Path, callbacks: list[Callback], tracked: RunHandle | None
) -> Trainer:
    t = cfg.train
    part = f"part{len(log_files(run)) + 1}"  # flushed every step: a killed run keeps its rows
    csv_log = CSVLogger(save_dir=run, name="logs", version=part, flush_logs_every_n_steps=1)
    mlflow_log = training_logger(tracked)
    return Trainer(
        default_root_dir=run,
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        callbacks=callbacks,
        logger=[csv_log, mlflow_log] if mlflow_log else csv_log,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_progress_bar=t.progress,
        enable_model_summary=False,
        profiler=profiler_of(t.profiler, run),
    )


def profiler_of(kind: str, run: Path) -> Profiler | None:
    """Lightning's profiler of that kind, writing `<run>/fit-profile.txt` (none: None)."""
    if kind == "simple":
        return SimpleProfiler(dirpath=run, filename="profile", extended=True)
    if kind == "advanced":
        return AdvancedProfiler(dirpath=run, filename="profile")
    return None


def find_lr(trainer: Trainer, module: XrayClassifier, dm: XrayDataModule, run: Path) -> float:
    from lightning.pytorch.tuner import Tuner

    finder = Tuner(trainer).lr_find(module, datamodule=dm, num_training=100)
    if finder is None or finder.suggestion() is None:
        raise PneumoniaError(
            "the LR finder found no suggestion (it needs a few dozen training batches and a "
            "loss that falls); set train.lr yourself and train.lr_find=false"
        )
    fig = finder.plot(suggest=True)
    fig.savefig(run / "lr_find.png", dpi=100)  # type: ignore[union-attr]
    lr = float(finder.suggestion())  # type: ignore[arg-type]
    log.info("LR finder suggests lr=%.3g (figure: %s)", lr, run / "lr_find.png")
    module.lr = lr
    return lr


def log_files(run: Path) -> list[Path]:
    """Lightning's CSV logs of a run, one per start or resume, oldest first."""
    return sorted((run / "logs").glob("part*/metrics.csv"))


def write_epoch_table(log_csvs: list[Path], out: Path) -> Path:
    """Lightning's sparse logs -> one row per epoch with every metric."""
    series = read_epoch_metrics(log_csvs)
    epochs = sorted({e for values in series.values() for e, _ in values})
    columns = [*EPOCH_COLUMNS, *(k for k in OPTIONAL_COLUMNS if series.get(k))]
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", *columns])
        for e in epochs:
            row = [dict(series.get(k, [])).get(e) for k in columns]
            writer.writerow([e, *("" if v is None else f"{v:.6g}" for v in row)])
    return out


def epoch_history(table: Path) -> list[dict[str, float | None]]:
    """`metrics.csv` as one dict per epoch, for the bundle (its curves travel with it)."""
    with table.open(newline="") as fh:
        return [{k: float(v) if v else None for k, v in row.items()} for row in csv.DictReader(fh)]
