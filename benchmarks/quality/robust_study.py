"""Candidate studies (issues 11, 12): train candidate recipes, run the shift suite on each.

    .venv/bin/python benchmarks/quality/robust_study.py CANDIDATE... [--data DIR] [--out DIR]
        [--set KEY=VALUE ...] [--reuse]

A candidate is a config under configs/experiments/robust/ (or `--configs DIR`). `data split`
runs once; for each candidate: the cache for its preprocessing (reused when present), `train`
with that config (tracking off), then `stress` on the validation split (on the GPU when there
is one). Writes OUT/<candidate>/ (run folder, stress outputs) and OUT/study.json with one
record per candidate; judge them with benchmarks/quality/robust_judge.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch

from pneumonia.core.config import load_config
from pneumonia.core.options import Scoring
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import read_manifest
from pneumonia.evaluation.stress import stress
from pneumonia.inference.loading import load_bundle
from pneumonia.training.train import train

REPO = Path(__file__).resolve().parents[2]
CANDIDATES = REPO / "configs" / "experiments" / "robust"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "chest_xray"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("reports/robust"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--configs", type=Path, default=CANDIDATES, help="folder of candidate configs"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="a candidate whose run already wrote its bundle is not trained again",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        help="<model name>.safetensors ImageNet weights here (a machine without the packages)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = args.out / "work"
    common = [f"data.manifest={work / 'manifest.csv'}", f"data.cache_dir={work / 'cache'}"]
    common += ["tracking.enabled=false", "train.progress=false", *args.overrides]
    first = load_config(args.configs / f"{args.candidates[0]}.yaml", common)
    if not first.data.manifest.is_file():
        cli = [sys.executable, "-m", "pneumonia", "data"]
        subprocess.run(
            [*cli, "split", str(args.data), "--out", str(first.data.manifest)], check=True
        )
    records = []
    study = args.out / "study.json"
    if study.is_file():
        records = [r for r in json.loads(study.read_text()) if r["name"] not in args.candidates]
    rows = read_manifest(first.data.manifest)  # every candidate shares the split
    for name in args.candidates:
        out = args.out / name
        overrides = [*common, f"train.out_dir={out}", "train.run_name=run"]
        cfg = load_config(args.configs / f"{name}.yaml", overrides)
        if args.weights_dir:
            weights = args.weights_dir / f"{cfg.model.name}.safetensors"
            cfg = load_config(
                args.configs / f"{name}.yaml", [*overrides, f"model.weights={weights}"]
            )
        # cached once per image size and resize mode
        prepare_cache(
            rows, cfg.data.cache_dir, cfg.preprocess, cfg.data.loader_workers() or None, show=False
        )
        trained = out / "run" / "bundle"
        if args.reuse and (trained / "model.json").is_file():
            bundle = load_bundle(trained, "torch")
            summary = {**bundle.meta.training, "threshold": bundle.threshold}
        else:
            summary = train(cfg, force=True, command=f"benchmarks/quality/robust_study.py {name}")
            bundle = load_bundle(summary["bundle"], "torch")
        if torch.cuda.is_available():  # the suite's network passes on the GPU too
            bundle.model.cuda()
        result = stress(
            bundle,
            cfg.data.manifest,
            "val",
            out / "stress",
            scoring=Scoring(show=False, n_boot=200),
        )
        records.append(
            {
                "name": name,
                "duration_s": summary["duration_s"],
                "device": summary["device"],
                "epochs_run": summary["epochs_run"],
                "best_epoch": summary["best_epoch"],
                "threshold": summary["threshold"],
                "stress": result["shifts"],
            }
        )
        study.write_text(json.dumps(records, indent=2) + "\n")
        clean = result["shifts"][0]
        logging.info("%s: clean AUC %.4f, %s s", name, clean["roc_auc"], summary["duration_s"])


if __name__ == "__main__":
    main()
