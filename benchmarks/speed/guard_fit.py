"""Benchmark: how long fitting the out-of-distribution guard takes, per backend.

    .venv/bin/python benchmarks/speed/guard_fit.py [--bundle DIR] [--manifest work/manifest.csv]
        [--backends torch onnx] [--views 3]

`pneumonia train` ends by fitting the guard (`guard_training.add_guard`): the pooled features
of every training image, clean and in `--views` augmented copies, then validation and the
generated OOD corpus. It runs on the bundle's ONNX model when training exported one (the
default since 2026-11-23), on PyTorch before. This fits it on a temporary copy of the bundle
(default: the shipped model, whose training manifest and cache `pneumonia data split` and
`data prepare` make) once per backend, and prints a markdown table of seconds and of the
largest difference between the two guards' validation scores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine

from pneumonia.core.bundle import DEFAULT_BUNDLE
from pneumonia.core.config import Config, GuardConfig
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.datamodule import XrayDataModule
from pneumonia.training.guard_fit import add_guard, dataset_outputs


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Seconds per backend, and `score_difference` when two backends ran."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--manifest", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--cache", type=Path, default=Path("work/cache"))
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--views", type=int, default=GuardConfig().augmented_views)
    args = parser.parse_args(argv)
    cfg = GuardConfig(augmented_views=args.views)
    seconds, scores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            folder = Path(tmp) / backend
            shutil.copytree(args.bundle, folder)
            bundle = load_bundle(folder, backend)
            data = Config.model_validate(bundle.meta.training["config"]).data
            data = data.model_copy(update={"manifest": args.manifest, "cache_dir": args.cache})
            dm = XrayDataModule(data, bundle.contract)
            dm.setup("fit")
            start = time.perf_counter()
            add_guard(bundle, dm, cfg)
            seconds[backend] = time.perf_counter() - start
            fitted = load_bundle(folder, backend)
            assert fitted.guard is not None
            val = dm.dataset("val")
            squares = [np.load(p) for p in val.paths]
            scores[backend] = fitted.guard.scores(dataset_outputs(fitted.model, val)[1], squares)
    print(f"{machine()}, {args.views} augmented views of each image")
    print("\n| backend | guard fit, s |\n| --- | ---: |")
    for backend, value in seconds.items():
        print(f"| {backend} | {value:.0f} |")
    if len(scores) == 2:
        a, b = scores.values()
        diff = float(np.abs(a - b).max() / np.abs(a).max())
        print(f"\nlargest difference of the two guards' validation scores: {diff:.2e} (relative)")
        return {**seconds, "score_difference": diff}
    return seconds


if __name__ == "__main__":
    main()
