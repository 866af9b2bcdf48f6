"""`pneumonia demo`: every stage end to end on SYNTHETIC images, offline, in a few minutes.

It writes a small synthetic dataset in the Kaggle layout and runs split -> prepare -> audit ->
train -> evaluate -> predict with the same functions the commands use. The images are drawn by
`pneumonia.data.synthetic`; the numbers say nothing about real X-rays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pneumonia.core.config import Config, dump_config, load_config
from pneumonia.core.options import Scoring
from pneumonia.core.outputs import fresh_dir
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import make_manifest, write_manifest
from pneumonia.data.synthetic import make_dataset
from pneumonia.evaluation.audit import run_audit
from pneumonia.evaluation.evaluate import evaluate
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import expand_inputs, predict_paths
from pneumonia.serving.predict import write_tables
from pneumonia.training.train import train

log = logging.getLogger(__name__)
DEMO_COUNTS = {
    "train": {"NORMAL": 150, "PNEUMONIA": 250},
    "val": {"NORMAL": 4, "PNEUMONIA": 4},
    "test": {"NORMAL": 40, "PNEUMONIA": 40},
}


def demo_config(workdir: Path, *overrides: str) -> Config:
    """The default config, shrunk to a small CNN on 64-pixel images inside `workdir`."""
    return load_config(
        None,
        [
            f"data.manifest={workdir / 'manifest.csv'}",
            f"data.cache_dir={workdir / 'cache'}",
            "data.val_fraction=0.2",
            "data.num_workers=0",
            "preprocess.image_size=64",
            "model.name=cnn_small",
            "model.pretrained=false",
            "train.epochs=8",
            "train.freeze_epochs=0",
            "train.frozen_stages=0",
            "operating.target_sensitivity=0.95",
            "train.lr=0.003",
            f"train.out_dir={workdir / 'runs'}",
            f"audit.file={workdir / 'audit' / 'label_issues.csv'}",
            "train.run_name=demo",
            f"tracking.uri=sqlite:///{workdir.resolve() / 'mlruns.db'}",
            *overrides,
        ],
    )


def run_demo(
    workdir: Path,
    force: bool = False,
    overrides: tuple[str, ...] = (),
    say: Callable[[str], None] = log.info,
    show: bool = True,
) -> dict[str, Any]:
    """Run every stage on synthetic data under `workdir`; returns each stage's result."""
    workdir = fresh_dir(workdir, force)
    cfg = demo_config(workdir, *overrides)
    say("[1/6] writing a SYNTHETIC dataset (drawn shapes, not real X-rays)")
    root = make_dataset(workdir / "data", "kaggle", DEMO_COUNTS, size_range=(64, 96), seed=0)
    say(f"[2/6] split: validation carved from training, grouped by patient -> {cfg.data.manifest}")
    rows, _ = make_manifest(root, cfg.data.val_fraction, cfg.data.seed, show=show)
    write_manifest(rows, cfg.data.manifest)
    dump_config(cfg, workdir / "config.yaml")
    say(f"[3/6] prepare: decoding into {cfg.data.cache_dir}")
    prepare_cache(rows, cfg.data.cache_dir, cfg.preprocess, show=show)
    say("[4/6] audit: likely label errors, left out of the threshold fit")
    _, audit = run_audit(
        cfg.data.manifest, cfg.data.cache_dir, cfg.preprocess, workdir / "audit", show=show
    )
    say(f"      {audit['issues']} of {audit['images']} flagged: {workdir / 'audit' / 'index.html'}")
    say(f"[5/6] train: {cfg.model.name}, {cfg.train.epochs} epochs on CPU or GPU")
    summary = train(cfg, command="pneumonia demo")
    bundle = load_bundle(summary["bundle"])
    say("[6/6] evaluate on the synthetic test split, then predict a few test images")
    scoring = Scoring(show=show, n_boot=200, tracking=cfg.tracking)
    result = evaluate(bundle, root, "test", workdir / "evaluate", scoring)
    sample = expand_inputs([str(root / "chest_xray" / "test")])[::10]
    predictions = predict_paths(bundle, sample, show=show)
    write_tables(predictions, bundle, workdir / "predict")
    return {"train": summary, "evaluate": result, "predict": predictions, "data": root}
