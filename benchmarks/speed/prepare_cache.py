"""Benchmark: split and cache the shared training images with the real CLI, cold cache.

    .venv/bin/python benchmarks/speed/prepare_cache.py [DATA_DIR]

Prints a markdown table row per step; copy it into docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "chest_xray"
CLI = str(Path(sys.executable).with_name("pneumonia"))


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([CLI, *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split_s = timed(["data", "split", str(data)], work)
        cold_s = timed(["data", "prepare"], work)
        warm_s = timed(["data", "prepare"], work)
        n = sum(1 for _ in (work / "work" / "cache").rglob("*.npy"))
        rows = len((work / "work" / "manifest.csv").read_text().splitlines()) - 1
    cpu = machine()
    images = f"{rows} ({n} distinct)"
    print(f"| `data split` (hash + grouped split) | {images} | {split_s:.1f} s | {cpu} |")
    cold = "`data prepare`, cold cache (decode + resize to 224)"
    print(f"| {cold} | {images} | {cold_s:.1f} s | {cpu} |")
    print(f"| `data prepare`, warm cache (all reused) | {images} | {warm_s:.1f} s | {cpu} |")


if __name__ == "__main__":
    main()
