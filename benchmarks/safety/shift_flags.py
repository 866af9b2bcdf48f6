"""How often does each bundle's guard refuse genuine X-rays under the shift suite's shifts?

    .venv/bin/python benchmarks/safety/shift_flags.py NAME=BUNDLE ... \
        [--data work/manifest.csv] [--split val]

For every image of the split, clean and under every shift of `pneumonia.data.shifts` (the
suite `pneumonia stress` scores), each bundle's guard verdict on its own contract's square:
the share flagged per shift, and how much of it the guard's layout check flagged where it has
one. Genuine shifted X-rays should stay near the guard's clean budget; `inverted` should be
refused. Prints a Markdown table with the machine it ran on; returns the shares.
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

from pneumonia.core.progress import parallel_map
from pneumonia.data.shifts import CLEAN, resolve, views_job
from pneumonia.data.split import read_manifest
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import network_scores


def shares(bundle: Bundle, paths: list[str], names: list[str]) -> dict[str, tuple[float, float]]:
    """Per view (clean, then each shift): (share the guard flags, share its layout check
    flags; NaN without one)."""
    if bundle.guard is None:
        raise SystemExit(f"{bundle.path}: has no guard to measure")
    jobs = [(p, tuple(names), 0, bundle.contract) for p in paths]
    loaded = parallel_map(views_job, jobs, "shifting images", show=False)
    views = np.stack([v for v in loaded if not isinstance(v, str)])  # unreadable: left out
    out = {}
    for k, name in enumerate([CLEAN, *names]):
        squares = list(views[:, k])
        features = network_scores(bundle.model, bundle.contract, squares, 32, features=True)[1]
        flagged = ~bundle.guard.in_distribution(bundle.guard.scores(features, squares))
        layout = bundle.guard.layout
        by_layout = (layout.logits(squares) > layout.threshold).mean() if layout else np.nan
        out[name] = (float(flagged.mean()), float(by_layout))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", help="NAME=BUNDLE folder")
    parser.add_argument("--data", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--backend", default="onnx")
    args = parser.parse_args(argv)
    paths = [r.path for r in read_manifest(args.data) if r.split == args.split]
    names = resolve(None)
    start = time.perf_counter()
    result = {}
    for spec in args.bundles:
        name, _, folder = spec.partition("=")
        result[name] = shares(load_bundle(Path(folder), args.backend), paths, names)
    print(f"{len(paths)} images of split {args.split!r}; {machine()}, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    header = " | ".join(f"{n} flagged (by its layout check)" for n in result)
    print(f"| shift | {header} |\n|---|{'---:|' * len(result)}")
    for view in [CLEAN, *names]:
        cells = " | ".join(
            f"{r[view][0]:.3f} ({'-' if np.isnan(r[view][1]) else f'{r[view][1]:.3f}'})"
            for r in result.values()
        )
        print(f"| {view} | {cells} |")
    return result


if __name__ == "__main__":
    main()
