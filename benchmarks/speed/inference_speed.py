"""Benchmark: `pneumonia predict` as a user runs it, one image and a folder, wall clock.

    .venv/bin/python benchmarks/speed/inference_speed.py [--images 624] [--repeats 3] [-- FLAGS...]

Makes a folder of 224x224 JPEGs: the first `--images` of the shared training split (sorted
paths, ../shared/data/chest_xray/train) when it is there, else synthetic X-rays saved as
JPEG. Then runs, in fresh processes, `python -m pneumonia predict ONE.jpeg` and `predict
FOLDER` with the flags after `--` (none: the defaults), `--repeats` times each, and prints the
median wall times and the folder's images/s beyond start-up (folder time minus one-image
time). Run it with `PYTHONPATH=<other checkout>/src` to time another version of the package.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "chest_xray" / "train"


def make_folder(target: Path, count: int, side: int = 224) -> str:
    """`count` 224-px JPEGs in `target`; says where they came from."""
    target.mkdir(parents=True)
    found = sorted(SHARED.glob("*/*.jpeg"))[:count] if SHARED.is_dir() else []
    if len(found) == count:
        for i, path in enumerate(found):
            shutil.copy(path, target / f"{i:04d}-{path.name}")
        return f"the first {count} shared training images"
    from pneumonia.data.synthetic import synthetic_xray

    rng = np.random.default_rng(0)
    for i in range(count):
        label = ("NORMAL", "PNEUMONIA")[i % 2]
        Image.fromarray(synthetic_xray(label, side, side, rng)).save(target / f"{i:04d}.jpeg")
    return f"{count} synthetic X-rays"


def wall(args: list[str], repeats: int) -> float:
    """Median wall seconds of `python -m pneumonia ARGS` in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pneumonia", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=624)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        source = make_folder(folder, args.images)
        one = str(sorted(folder.iterdir())[0])
        out = ["--out", str(Path(tmp) / "out"), "--force", *flags]
        wall(["predict", one, *out], 1)  # warm the file cache
        single = wall(["predict", one, *out], args.repeats)
        many = wall(["predict", str(folder), *out], args.repeats)
    rate = (args.images - 1) / max(many - single, 1e-9)
    print(
        f"\n{source}; flags: {' '.join(flags) or '(none)'}; median of {args.repeats}; "
        f"{platform.machine()}, {os.cpu_count()} cores\n"
    )
    print("| one image, wall s | folder, wall s | folder images/s beyond start-up |")
    print("| ---: | ---: | ---: |")
    print(f"| {single:.2f} | {many:.2f} | {rate:.0f} |")
    return {"one_s": single, "folder_s": many, "per_second": rate}


if __name__ == "__main__":
    main()
