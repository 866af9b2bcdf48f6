"""How far is an original, rendered as the Kaggle copies were made, from its copy, pixel for pixel?

    .venv/bin/python benchmarks/quality/copy_gap.py [--originals DIR] [--copies DIR]

For every original with a copy of the same name (`pneumonia.evaluation.pairs.find_pairs`), the
mean absolute difference in grey levels (0-255) between the copy and: the original through the
render step of the shipped contract (`Render(224, 75)`: squashed, JPEG quality 75); the
original squashed by each of Pillow's resampling filters, then saved as JPEG quality 75; and
the copy itself saved again at quality 75 (what an exact reproduction would reach). Also the
8x8 block means of the render step against the copy's (the levels and geometry, without the
high frequencies). Prints a Markdown table with the machine it ran on; returns the means.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import COPIES, ORIGINALS, machine, print_table

from pneumonia.core.preprocess import Render, jpeg_round_trip
from pneumonia.data.image_io import read_image
from pneumonia.evaluation.pairs import find_pairs

FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "nearest": Image.Resampling.NEAREST,
}


def block_means(a: np.ndarray, block: int = 8) -> np.ndarray:
    """Means of `block` x `block` tiles of a square whose side `block` divides."""
    n = a.shape[0] // block
    return a.reshape(n, block, n, block).astype(np.float64).mean((1, 3))


def gaps(original: np.ndarray, copy: np.ndarray) -> dict[str, float]:
    """Mean |difference| of each rendering of `original` against `copy` (both 2-D uint8)."""
    side = copy.shape[0]
    render = Render(side=side, quality=75).apply(original, "stretch")
    out = {"render step (shipped contract)": render}
    for name, flt in FILTERS.items():
        squashed = np.asarray(Image.fromarray(original).resize((side, side), flt))
        out[f"{name}, then JPEG q75"] = jpeg_round_trip(squashed, 75)
    out["the copy saved again at q75"] = jpeg_round_trip(copy, 75)
    c = copy.astype(np.float64)
    result = {k: float(np.abs(v.astype(np.float64) - c).mean()) for k, v in out.items()}
    result["render step, 8x8 block means"] = float(
        np.abs(block_means(render) - block_means(copy)).mean()
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=Path, default=ORIGINALS)
    parser.add_argument("--copies", type=Path, default=COPIES)
    args = parser.parse_args(argv)
    pairs, _ = find_pairs(args.originals, args.copies)
    started = time.perf_counter()
    rows = []
    for pair in pairs:
        copy = read_image(pair.copy)[1].pixels
        if copy.shape[0] != copy.shape[1] or copy.shape[0] % 8:
            continue  # not a square copy of the Kaggle kind
        rows.append(gaps(read_image(pair.original)[1].pixels, copy))
    if not rows:
        raise SystemExit(f"{args.copies}: no square copies whose side 8 divides")
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f"{len(rows)} pairs; {machine()}, {time.perf_counter() - started:.0f} s")
    header = "mean \\|difference\\| from the copy, grey levels"
    print_table(["rendering of the original", header], [[n, f"{v:.3f}"] for n, v in means.items()])
    return {"pairs": len(rows), "gaps": means}


if __name__ == "__main__":
    main()
