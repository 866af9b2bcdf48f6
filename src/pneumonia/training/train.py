"""`train(cfg) -> summary`: the whole training run as one plain function.

A run folder holds everything about one run: the resolved `config.yaml`, Lightning's raw log
(`logs/`), `metrics.csv` (one row per epoch), `curves.png`, `checkpoints/` (best by validation
ROC-AUC, and last, for resuming), `lr_find.png` when the LR finder ran, `summary.json`, and
`bundle/`, the self-describing model. Seeds are fixed for Python, NumPy, torch and the loader
workers.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from lightning import Trainer, seed_everything
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from pneumonia.core import LABELS
from pneumonia.core.config import Config, dump_config, load_config
from pneumonia.core.errors import DataError, PneumoniaError
from pneumonia.core.meta import Architecture, BundleMeta, Calibration, Threshold
from pneumonia.core.outputs import fresh_dir
from pneumonia.core.results import TrainingResult
from pneumonia.core.tracking import RunHandle, end_run, log_outputs, start_run
from pneumonia.data.discover import name_list
from pneumonia.data.shifts import check_views
from pneumonia.data.split import manifest_digest, summarize
from pneumonia.evaluation.audit import unflagged
from pneumonia.evaluation.metrics import binary_metrics, headline, jsonable, validation_record
from pneumonia.evaluation.operating import check_validation, fit_operating_point
from pneumonia.evaluation.plots import read_epoch_metrics, training_curves
from pneumonia.evaluation.subtype import subtype_record
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import to_probability
from pneumonia.modeling.allocator import keep_freed_memory
from pneumonia.modeling.classifier import XrayClassifier
from pneumonia.modeling.datamodule import XrayDataModule
from pneumonia.modeling.models import create_model, get_spec
from pneumonia.modeling.network import save_bundle
from pneumonia.training.averaging import EMAAveraging
from pneumonia.training.loop import (
    epoch_history,
    find_lr,
    log_files,
    make_trainer,
    write_epoch_table,
)
from pneumonia.training.rng_state import RngState

log = logging.getLogger(__name__)

for _pattern in (".*does not have many workers.*", ".*srun.*", ".*LeafSpec.*"):
    warnings.filterwarnings("ignore", message=_pattern)


def run_folder(cfg: Config) -> Path:
    """`train.out_dir / (train.run_name or <model>-<timestamp>)`."""
    name = cfg.train.run_name or f"{cfg.model.name}-{datetime.now():%Y%m%d-%H%M%S}"
    return cfg.train.out_dir / name


def _callbacks(cfg: Config, run: Path) -> tuple[ModelCheckpoint, list[Callback]]:
    best = ModelCheckpoint(
        dirpath=run / "checkpoints",
        filename="best-epoch{epoch:02d}-auc{val_auc:.4f}",
        auto_insert_metric_name=False,
        monitor="val_auc",
        mode="max",
        save_top_k=1,
    )
    # every epoch, improved or not (Lightning's save_last only follows a new best)
    last = ModelCheckpoint(
        dirpath=run / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False
    )
    stop = EarlyStopping(monitor="val_auc", mode="max", patience=cfg.train.early_stopping_patience)
    callbacks: list[Callback] = [best, last, stop, RngState()]
    if cfg.train.weight_averaging == "ema":
        callbacks.append(EMAAveraging(cfg.train.ema_decay, start_epoch=cfg.train.freeze_epochs))
    if cfg.train.progress:
        callbacks.append(RichProgressBar(leave=False))
    return best, callbacks


def _check_data(dm: XrayDataModule, cfg: Config) -> None:
    for split in ("train", "val"):
        labels = {r.label for r in dm.rows[split]}
        if labels != set(LABELS):
            raise DataError(
                f"{dm.cfg.manifest}: the {split} split needs both classes, has {sorted(labels)}"
            )
    check_validation(np.array([LABELS.index(r.label) for r in dm.rows["val"]]), cfg.operating)


def validation_logits(module: XrayClassifier, dm: XrayDataModule) -> tuple[np.ndarray, np.ndarray]:
    """(labels, raw screening logits) of the whole validation split, no augmentation."""
    labels, _, out = validation_outputs(module, dm)
    return labels, out[:, 0]


def validation_outputs(
    module: XrayClassifier, dm: XrayDataModule
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, subtype codes, raw outputs (N, outputs)) of the validation split."""
    ds = dm.dataset("val")
    module.eval()
    out = []
    with torch.inference_mode():
        for x, *_ in DataLoader(ds, batch_size=dm.cfg.batch_size):
            out.append(module.outputs(x.to(module.device)).float().cpu().numpy())
    return np.asarray(ds.labels), np.asarray(ds.subtypes), np.concatenate(out)


def operating_point(
    cfg: Config, dm: XrayDataModule, module: XrayClassifier, kept: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Threshold, Calibration | None]:
    """(validation labels, raw logits, threshold, calibration): calibration and threshold
    fitted on the validation images where `kept` is true (an audit's likely label errors
    left out), on the cached squares or, with `operating.views`, on the validation files read
    again, clean and shifted."""
    if not cfg.operating.views:
        labels, raw = validation_logits(module, dm)
        threshold, calibration, _ = fit_operating_point(labels[kept], raw[kept], cfg.operating)
        return labels, raw, threshold, calibration
    from pneumonia.evaluation.stress import split_views, view_logits

    rows = dm.rows["val"]
    paths = [r.path for r in rows]
    views = view_logits(
        module.model, cfg.preprocess, paths, cfg.operating.views, cfg.train.seed, show=False
    )
    labels, clean, shifted = split_views(views, [LABELS.index(r.label) for r in rows])
    kept = kept[views.readable]
    shifted = {name: z[kept] for name, z in shifted.items()}
    threshold, calibration, _ = fit_operating_point(
        labels[kept], clean[kept], cfg.operating, shifted
    )
    return labels, clean, threshold, calibration


def _bundle_meta(
    cfg: Config,
    dm: XrayDataModule,
    operating: tuple[Threshold, Calibration | None],
    metrics: dict[str, Any],
    info: dict[str, Any],
) -> BundleMeta:
    return BundleMeta(
        architecture=Architecture(name=cfg.model.name, num_classes=2 if cfg.data.subtype else 1),
        preprocessing=cfg.preprocess,
        threshold=operating[0],
        calibration=operating[1],
        validation=validation_record(metrics, "val"),
        data={
            "manifest": str(cfg.data.manifest),
            "manifest_sha256": manifest_digest(cfg.data.manifest),
            "counts": summarize([r for rows in dm.rows.values() for r in rows]),
            "patients": {s: len({r.patient for r in dm.rows[s]}) for s in ("train", "val")},
        },
        training={"config": cfg.model_dump(mode="json"), **info},
    )


def _check_pairs(cfg: Config) -> None:
    """`data.pairs`' folder and name list exist (they are read when training starts)."""
    pairs = cfg.data.pairs
    if pairs.originals is not None and not pairs.originals.is_dir():
        raise DataError(
            f"{pairs.originals}: no such folder (data.pairs.originals: NORMAL/ and PNEUMONIA/ "
            "folders of other files named as the training images)"
        )
    if pairs.only is not None:
        name_list(pairs.only)


RUN_ENV = "PNEUMONIA_RUN_DIR"  # the run folder, for DDP's worker processes


def _start(cfg: Config, resume: Path | None, force: bool) -> tuple[Config, Path, Path | None]:
    """(config, run folder, checkpoint to resume from). DDP on CPUs or GPUs starts the same
    command once more per extra device (LOCAL_RANK >= 1): those processes join the run
    folder the first one made (named in RUN_ENV, which they inherit)."""
    if int(os.environ.get("LOCAL_RANK", "0")) > 0 and RUN_ENV in os.environ:
        run = Path(os.environ[RUN_ENV])
        last = run / "checkpoints" / "last.ckpt"
        return load_config(run / "config.yaml"), run, last if resume is not None else None
    if resume is None:
        get_spec(cfg.model.name)  # an unknown model fails before anything is written
        check_views(cfg.operating.views)  # so does an unknown shift view
        if cfg.audit.file is not None:  # so does a missing label audit
            from pneumonia.evaluation.audit import require_audit

            require_audit(cfg.audit.file)
        _check_pairs(cfg)  # and missing paired renderings
        run = fresh_dir(run_folder(cfg), force)
        dump_config(cfg, run / "config.yaml")
        return cfg, run, None
    last = resume / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise PneumoniaError(f"{resume}: no checkpoints/last.ckpt to resume from")
    return load_config(resume / "config.yaml"), resume, last


def train(
    cfg: Config, resume: Path | None = None, force: bool = False, command: str = ""
) -> TrainingResult:
    """Train one model as `cfg` says (or resume a run folder); returns the run's summary."""
    cfg, run, ckpt = _start(cfg, resume, force)
    os.environ[RUN_ENV] = str(run)
    keep_freed_memory()  # no page faults for every tensor of every step (modeling.allocator)
    seed_everything(cfg.train.seed, workers=True, verbose=False)
    dm = XrayDataModule(cfg.data, cfg.preprocess)
    dm.setup("fit")
    left_out = _label_audit(cfg, dm)
    _check_data(dm, cfg)
    outputs = 2 if cfg.data.subtype else 1  # screening, and the subtype head when asked
    model = create_model(
        cfg.model.name, cfg.model.pretrained, num_classes=outputs, weights=cfg.model.weights
    )
    weights = dm.class_weights()
    pos_weight = float(weights[1] / weights[0]) if cfg.data.balance == "class_weights" else None
    subtype_weight = dm.subtype_weight() if cfg.data.subtype else None
    module = XrayClassifier(model, cfg.train, pos_weight, subtype_weight)
    best, callbacks = _callbacks(cfg, run)
    tracked = _track(cfg, run, command)
    trainer = make_trainer(cfg, run, callbacks, tracked)
    if cfg.train.lr_find and ckpt is None:
        find_lr(trainer, module, dm, run)
    log.info("run folder: %s", run)
    started = time.perf_counter()
    try:  # a failure anywhere from here marks the tracked run failed; checkpoints are kept
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
        duration = round(time.perf_counter() - started, 1)
        info = {"command": command, "duration_s": duration, "mlflow_run": tracked and tracked[1]}
        info["left_out"] = left_out
        summary = _finish(cfg, run, dm, module, best, trainer, info)
    except SystemExit:  # Lightning's answer to Ctrl+C, after saving what it could
        end_run(tracked, ok=False)
        raise PneumoniaError(
            f"interrupted; continue with `pneumonia train --resume {run}`"
        ) from None
    except BaseException:
        end_run(tracked, ok=False)
        raise
    _log_run(tracked, run, summary)
    return cast(TrainingResult, summary)


def _label_audit(cfg: Config, dm: XrayDataModule) -> tuple[set[tuple[str, str]], dict[str, Any]]:
    """((sha256, label) of the audit's likely label errors among the manifest's images, what
    `model.json` records of them); none without `audit.file`. Dropped from the training rows
    when `audit.leave_out` says training."""
    if cfg.audit.file is None:
        return set(), {}
    from pneumonia.evaluation.audit import left_out_record, read_issues

    flagged = read_issues(cfg.audit.file, dm.rows["train"] + dm.rows["val"])
    record = left_out_record(cfg.audit.file, flagged, dm.rows, cfg.audit.leave_out)
    if "training" in cfg.audit.leave_out:
        dm.leave_out(flagged, "train")
    return set(flagged), record


def _track(cfg: Config, run: Path, command: str) -> RunHandle | None:
    """An MLflow run for this training run (rank zero only under DDP)."""
    if getattr(rank_zero_only, "rank", 0) != 0:
        return None
    params = {**cfg.model_dump(mode="json"), "run_dir": str(run), "command": command}
    return start_run(cfg.tracking, run.name, "train", params)


def _log_run(tracked: RunHandle | None, run: Path, summary: dict[str, Any]) -> None:
    if tracked is None:
        return
    at_threshold = {f"operating/{k}": v for k, v in summary["validation"].items()}
    metrics = {**at_threshold, "operating/threshold": summary["threshold"]}
    metrics["duration_s"] = summary["duration_s"]
    names = ("config.yaml", "metrics.csv", "curves.png", "lr_find.png", "summary.json")
    log_outputs(tracked, metrics, [run / n for n in names], {"bundle": run / "bundle"})
    end_run(tracked, ok=True)


def export_bundle(folder: Path) -> bool:
    """Export a new bundle's `model.onnx` (checked against PyTorch); True when written. A
    failure is logged with the command to retry, and the bundle stays PyTorch-only."""
    from pneumonia.modeling.export import export_onnx

    try:
        export_onnx(load_bundle(folder, "torch"))
    except Exception as err:  # the trained bundle is kept whatever the export does
        log.warning(
            "%s: not exported to ONNX (%s); it runs on PyTorch. Retry with "
            "`pneumonia export %s --onnx`",
            folder,
            err,
            folder,
        )
        return False
    return True


def _finish(
    cfg: Config,
    run: Path,
    dm: XrayDataModule,
    module: XrayClassifier,
    best: ModelCheckpoint,
    trainer: Trainer,
    info: dict[str, Any],
) -> dict[str, Any]:
    best_path = (
        Path(best.best_model_path) if best.best_model_path else run / "checkpoints/last.ckpt"
    )
    checkpoint = torch.load(best_path, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    if not trainer.is_global_zero:  # under DDP, one process writes the outputs
        return {"run_dir": str(run)}
    flagged, left_out = info["left_out"]
    flagged = flagged if "operating" in cfg.audit.leave_out else set()
    kept = unflagged(((r.sha256, r.label) for r in dm.rows["val"]), flagged)
    labels, raw, threshold, calibration = operating_point(cfg, dm, module, kept)
    threshold.detail["data"] = f"{cfg.data.manifest} split 'val'"  # as evaluate names it
    if not kept.all():
        threshold.detail["left_out"] = int((~kept).sum())
    probs = to_probability(raw, calibration.temperature if calibration else 1.0)
    metrics = binary_metrics(labels, probs, threshold.value)  # every validation image
    write_epoch_table(log_files(run), run / "metrics.csv")
    training_curves(read_epoch_metrics(log_files(run)), run / "curves.png")
    info = {
        "command": info["command"],
        "epochs_run": trainer.current_epoch,
        "best_epoch": int(checkpoint["epoch"]),
        "duration_s": info["duration_s"],  # of this process: a resumed run counts its own part
        "mlflow_run": info["mlflow_run"],
        "lr": module.lr,
        "device": str(trainer.strategy.root_device),
        "processes": trainer.world_size,
        "precision": cfg.train.precision,
        "history": epoch_history(run / "metrics.csv"),
    }
    meta = _bundle_meta(cfg, dm, (threshold, calibration), metrics, info)
    if cfg.data.subtype:  # the subtype head judged on validation, at P(viral) >= 0.5
        y, codes, out = validation_outputs(module, dm)
        screen = to_probability(out[:, 0], calibration.temperature if calibration else 1.0)
        patients = [r.patient for r in dm.rows["val"]]
        meta.subtype = subtype_record(y, codes, screen, out[:, 1], threshold.value, patients)
    if left_out:
        meta.data["left_out"] = left_out
    bundle = save_bundle(module.model.cpu(), meta, run / "bundle")
    onnx = cfg.train.export_onnx and export_bundle(bundle)
    guard = None
    if cfg.guard.enabled:  # on ONNX Runtime's lanes when exported: a few times faster on a CPU
        from pneumonia.training.guard_fit import add_guard

        backend = "onnx" if onnx else "torch"
        guard = add_guard(load_bundle(bundle, backend), dm, cfg.guard, cfg.train.seed)
    summary = {
        "run_dir": str(run),
        "bundle": str(bundle),
        **info,
        "threshold": threshold.value,
        "threshold_rule": threshold.rule,
        "temperature": calibration.temperature if calibration else None,
        "validation": jsonable(headline(metrics)),
        "onnx": onnx,
        "guard": guard and guard.model_dump(),
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
