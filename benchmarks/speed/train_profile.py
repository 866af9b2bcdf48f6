"""Benchmark: where a default-recipe training epoch spends its time, per DataLoader setting.

    .venv/bin/python benchmarks/speed/train_profile.py [--batches 40] [--workers 0 1 2] \\
        [-- overrides...]

Trains the default recipe (configs/default.yaml; the manifest and cache of `data split` and
`data prepare` must exist) for `--batches` fine-tuning batches (`train.freeze_epochs=0`, one
epoch, 4 validation batches) once per `data.num_workers` value, with Lightning's
SimpleProfiler (`train.profiler=simple`), and prints seconds per training batch spent in each
part: waiting for the next batch (loading and augmentation not hidden by workers), forward
(`training_step`), backward and the optimizer step. Runs go to runs/profile-w<N>.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
from pathlib import Path

from pneumonia.core.config import load_config
from pneumonia.training.train import train

ACTIONS = {
    "batch": "run_training_batch",
    "loading": "[_TrainingEpochLoop].train_dataloader_next",
    "forward": "[Strategy]SingleDeviceStrategy.training_step",
    "backward": "[Strategy]SingleDeviceStrategy.backward",
}


def profile_totals(path: Path) -> dict[str, float]:
    """Total seconds per action of a SimpleProfiler report."""
    totals = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 5 and re.fullmatch(r"[\d.]+", cells[4]):
            totals[cells[1]] = float(cells[4])
    return totals


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.batch_size=16")
    args = parser.parse_args(argv)
    results: dict[int, dict[str, float]] = {}
    for workers in args.workers:
        cfg = load_config(
            None,
            [
                f"train.run_name=profile-w{workers}",
                f"data.num_workers={workers}",
                "train.epochs=1",
                "train.freeze_epochs=0",
                f"train.limit_train_batches={args.batches}",
                "train.limit_val_batches=4",
                "train.profiler=simple",
                "train.progress=false",
                "tracking.enabled=false",
                "guard.enabled=false",  # the epoch is profiled, not the guard fit after it
                "audit.file=null",  # nor the threshold's data
                *args.overrides,
            ],
        )
        summary = train(cfg, force=True)
        totals = profile_totals(Path(summary["run_dir"]) / "fit-profile.txt")
        per = {k: totals.get(v, 0.0) / args.batches for k, v in ACTIONS.items()}
        per["step"] = per["batch"] - per["forward"] - per["backward"]
        results[workers] = per
    print(
        f"\n{args.batches} fine-tuning batches of the default recipe; {platform.machine()}, "
        f"{os.cpu_count()} cores; seconds per batch\n"
    )
    print("| num_workers | waiting for data | forward | backward | optimizer step | batch total |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for workers, r in results.items():
        total = r["loading"] + r["batch"]
        print(
            f"| {workers} | {r['loading']:.3f} | {r['forward']:.3f} | {r['backward']:.3f} | "
            f"{r['step']:.3f} | {total:.3f} |"
        )
    return results


if __name__ == "__main__":
    main()
