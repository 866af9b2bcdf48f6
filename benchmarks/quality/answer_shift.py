"""How far do two bundles' answers lie apart on the same images (e.g. one recontracted)?

    .venv/bin/python benchmarks/quality/answer_shift.py BEFORE AFTER \
        [--data work/manifest.csv] [--split val] [--backend onnx]

Both bundles predict every image of the split; per image |dp| between their calibrated
P(PNEUMONIA), and the labels each gives at its own stored threshold. Prints the mean and
largest |dp|, how many labels changed (which images), and each bundle's ROC-AUC, sensitivity
and specificity at its threshold; returns the same as a dict.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine

from pneumonia.data.split import read_manifest
from pneumonia.evaluation.metrics import binary_metrics
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import predict_paths


def answers(folder: Path, paths: list[str], backend: str) -> tuple[np.ndarray, float]:
    """(P(PNEUMONIA) of every path, NaN where unreadable; the bundle's stored threshold)."""
    bundle = load_bundle(folder, backend)
    found = predict_paths(bundle, paths, batch_size=32, show=False)
    return np.array([np.nan if r.probability is None else r.probability for r in found]), (
        bundle.threshold
    )


def rates(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC-AUC, and sensitivity and specificity at `threshold`."""
    m = binary_metrics(y, p, threshold, report=False)
    return {k: m[k] for k in ("roc_auc", "sensitivity", "specificity")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--data", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--backend", default="onnx")
    args = parser.parse_args(argv)
    rows = [r for r in read_manifest(args.data) if r.split == args.split]
    paths, y = [r.path for r in rows], np.array([r.label == "PNEUMONIA" for r in rows], int)
    start = time.perf_counter()
    (p0, t0), (p1, t1) = (answers(b, paths, args.backend) for b in (args.before, args.after))
    ok = ~(np.isnan(p0) | np.isnan(p1))
    dp = np.abs(p1 - p0)[ok]
    changed = [Path(paths[i]).name for i in np.flatnonzero(ok & ((p0 >= t0) != (p1 >= t1)))]
    result = {
        "images": int(ok.sum()),
        "mean_dp": float(dp.mean()),
        "max_dp": float(dp.max()),
        "labels_changed": changed,
        "before": rates(y[ok], p0[ok], t0),
        "after": rates(y[ok], p1[ok], t1),
    }
    print(f"{result['images']} images of split {args.split!r}; {machine()}, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    print(f"mean |dp| {result['mean_dp']:.4f}, largest {result['max_dp']:.4f}; "
          f"labels changed: {len(changed)} {changed}")  # fmt: skip
    print("| bundle | ROC-AUC | sensitivity | specificity |\n|---|---:|---:|---:|")
    for name in ("before", "after"):
        r = result[name]
        print(f"| {name} | {r['roc_auc']:.4f} | {r['sensitivity']:.3f} | {r['specificity']:.3f} |")
    return result


if __name__ == "__main__":
    main()
