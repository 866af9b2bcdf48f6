"""`pneumonia train --folds K`: K models cross-fitted on the training split, one ensemble.

The manifest's training rows are cut into K folds (stratified, grouped by patient and by
identical content, as validation is carved: `data.split.fold_manifests`). Model k trains on
the other K-1 folds with fold k as its validation (checkpoints, early stopping, its own
calibration). Every training image is then scored by the one model that never saw it, and
the ensemble's operating point (temperature and threshold, by `operating.*` and the label
audit as any run) is fitted on these out-of-fold predictions: all the training split's
PNEUMONIA images instead of validation's few hundred. The manifest's validation split is held
out of every fold: the ensemble of the K models is measured on it, as any other candidate,
and that is what its bundle records as validation. The ensemble then gets its ONNX model and
its out-of-distribution guard (`training.ensembling`).

One assumption, stated in the bundle: the out-of-fold scores are single members' calibrated
logits, the ensemble answers with their mean; averaging makes scores a little less extreme,
so the held-out validation figures are the check that the threshold still does its job.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core.config import Config
from pneumonia.core.options import Scoring
from pneumonia.core.outputs import fresh_dir
from pneumonia.data.split import fold_manifests, read_manifest, write_manifest
from pneumonia.evaluation.audit import unflagged
from pneumonia.evaluation.evaluate import score_split
from pneumonia.evaluation.operating import fit_operating_point
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import OUT_OF_FOLD
from pneumonia.training.ensembling import build_ensemble
from pneumonia.training.train import run_folder, train

log = logging.getLogger(__name__)


def member_config(cfg: Config, run: Path, fold: int, manifest: Path) -> Config:
    """Fold `fold`'s training config: its manifest, inside the folds run, no export nor guard
    (the ensemble gets both)."""
    data = cfg.data.model_copy(update={"manifest": manifest})
    loop = cfg.train.model_copy(
        update={"out_dir": run, "run_name": f"fold{fold}", "export_onnx": False}
    )
    guard = cfg.guard.model_copy(update={"enabled": False})
    return cfg.model_copy(update={"data": data, "train": loop, "guard": guard})


def _flagged(cfg: Config, manifest: Path) -> set[tuple[str, str]]:
    """(sha256, label) of the audit's likely label errors, left out of the threshold fit as
    `audit.leave_out: [operating]` says (none without an audit)."""
    if cfg.audit.file is None or "operating" not in cfg.audit.leave_out:
        return set()
    from pneumonia.evaluation.audit import read_issues

    return set(read_issues(cfg.audit.file, read_manifest(manifest)))


def train_folds(cfg: Config, k: int, force: bool = False, command: str = "") -> dict[str, Any]:
    """Train `k` cross-fitted models and their ensemble (see the module); returns the
    ensemble's summary with the members and the out-of-fold operating point."""
    rows = read_manifest(cfg.data.manifest)
    folds = fold_manifests(rows, k, cfg.data.seed)  # fails on too few patients, before writing
    run = fresh_dir(run_folder(cfg), force)
    members, labels, logits, keys = [], [], [], []
    for i, fold in enumerate(folds):
        manifest = run / f"fold{i}-manifest.csv"
        write_manifest(fold, manifest, force=True)
        log.info("fold %d of %d: %d images held out", i + 1, k, sum(r.split == "val" for r in fold))
        member = member_config(cfg, run, i, manifest)
        summary = train(member, force=force, command=f"{command} (fold {i + 1} of {k})")
        bundle = load_bundle(summary["bundle"], "torch")
        scored = score_split(bundle, manifest, "val", Scoring(show=False))
        members.append(Path(summary["bundle"]))
        labels.append(scored.labels)
        logits.append(scored.logits / bundle.temperature)  # each member's calibrated logit
        sha = {r.path: r.sha256 for r in fold}
        keys += [(sha[it.path], it.label) for it in scored.items]
    y, z = np.concatenate(labels), np.concatenate(logits)
    flagged = _flagged(cfg, cfg.data.manifest)
    kept = unflagged(keys, flagged)
    threshold, calibration, _ = fit_operating_point(y[kept], z[kept], cfg.operating)
    threshold.detail.update(
        on=OUT_OF_FOLD,
        data=f"out-of-fold predictions of {k} models on {cfg.data.manifest} split 'train'",
        out_of_fold={"images": int(kept.sum()), "positives": int(y[kept].sum()), "folds": k},
        left_out=int((~kept).sum()),
    )
    result = build_ensemble(
        members,
        run / "bundle",
        cfg.data.manifest,
        "val",
        cfg.operating,
        show=False,
        command=command,
        onnx=cfg.train.export_onnx,
        guard=cfg.guard.enabled,
        operating=(threshold, calibration),
    )
    return {**result, "run_dir": str(run), "folds": k, "out_of_fold": threshold.detail}
