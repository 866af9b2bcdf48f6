"""Study: should the door find the film inside uniform borders before the contract applies?

    .venv/bin/python benchmarks/quality/border_study.py --data work/manifest.csv \\
        --originals ../shared/data/originals [--canvas 100] [--out reports/border_study.json]

Candidates: the shipped model with `preprocessing.borders: trim` (`core.preprocess.film_box`:
rows and columns at the edges spanning at most 8 grey levels, cut when a quarter of each side
is left and, candidate A, one border is at least 2% of its side; candidate B (written after
A failed rule 1 on the copies' own dark strips, 2-8% of the width, before its run), the two
borders across one side together at least 15% of it) against the shipped model as it is
(keep); candidate C (written after B failed rule 2 by 2 label changes of 100 on JPEG
canvases, before its run): B, and past each uniform border up to 12 more lines whose mean
lies within 16 grey levels of the border's (what JPEG's 8x8 blocks leave of a black bar).
None passed (docs/robustness.md); the code holds B, the closest, as an option no shipped
contract uses (`--ringing 12` gives C).

Adopt rule, written before the first run:
1. the images users bring without bars must not move: on the validation copies, the 600
   originals and their 600 copies, trim changes no label at the shipped threshold, moves no P
   by more than 0.02, and trims at most 5% of them;
2. a film on a black canvas (a viewer's export or a screenshot: the image centred on black
   1.4x its width and 1.2x its height) must answer as the film itself: over the first
   `--canvas` validation copies and the first `--canvas` originals, each saved as JPEG
   (quality 90) and as 16-bit PNG, trim changes at most 1 label per 100 images per format and
   moves P by at most 0.03 on average, and changes fewer labels than keep.
Both on the float ONNX model (the default backend). Validation and training-split originals
only; the official test split is never read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pneumonia.core import preprocess
from pneumonia.core.preprocess import film_box
from pneumonia.data.image_io import read_image
from pneumonia.evaluation.evaluate import select_items
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import score_squares


def probabilities(bundle: Bundle, grays: list[np.ndarray]) -> np.ndarray:
    """P(PNEUMONIA) of decoded images, 32 at a time."""
    out = []
    for k in range(0, len(grays), 32):
        squares = [bundle.contract.square(g) for g in grays[k : k + 32]]
        out.append(score_squares(bundle, squares)[:, 0])
    return np.concatenate(out)


def canvas(gray: np.ndarray) -> np.ndarray:
    """`gray` centred on black, 1.4x as wide and 1.2x as tall."""
    h, w = gray.shape
    big = np.zeros((round(h * 1.2), round(w * 1.4)), dtype=np.uint8)
    top, left = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    big[top : top + h, left : left + w] = gray
    return big


def saved(gray: np.ndarray, kind: str, folder: Path) -> np.ndarray:
    """`gray` written as JPEG q90 or 16-bit PNG and read back through the door."""
    path = folder / f"x.{'jpeg' if kind == 'jpeg' else 'png'}"
    if kind == "jpeg":
        Image.fromarray(gray).save(path, quality=90)
    else:
        Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    return read_image(path)[1].pixels


def compare(keep: np.ndarray, trim: np.ndarray, threshold: float) -> dict[str, Any]:
    changed = (keep >= threshold) != (trim >= threshold)
    dp = np.abs(keep - trim)
    return {"images": len(keep), "label_changes": int(changed.sum()),
            "max_dp": float(dp.max()), "mean_dp": float(dp.mean())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--originals", type=Path, default=Path("../shared/data/originals"))
    parser.add_argument("--copies", type=Path, default=Path("../shared/data/chest_xray/train"))
    parser.add_argument("--canvas", type=int, default=100)
    parser.add_argument("--least", type=float, default=0.15, help="LEAST_BORDERS")
    parser.add_argument("--ringing", type=int, default=0, help="RINGING (12: candidate C)")
    parser.add_argument("--out", type=Path, default=Path("reports/border_study.json"))
    args = parser.parse_args()
    preprocess.LEAST_BORDERS = args.least
    preprocess.RINGING = args.ringing
    keep = load_bundle(None, "onnx")
    contract = keep.contract.model_copy(update={"borders": "trim"})
    trim = dataclasses.replace(keep, meta=keep.meta.model_copy(update={"preprocessing": contract}))
    t = keep.threshold
    items, _ = select_items(args.data, "val")
    sets = {
        "validation copies": [read_image(it.path)[1].pixels for it in items],
        "originals": [read_image(p)[1].pixels for p in sorted(args.originals.glob("*/*.jpeg"))],
    }
    copies_root = args.copies
    names = [p.relative_to(args.originals) for p in sorted(args.originals.glob("*/*.jpeg"))]
    sets["their copies"] = [read_image(copies_root / n)[1].pixels for n in names]
    result: dict[str, Any] = {"threshold": t, "plain": {}, "canvas": {}}
    trimmed = 0
    for name, grays in sets.items():
        found = compare(probabilities(keep, grays), probabilities(trim, grays), t)
        found["trimmed"] = sum(film_box(g) is not None for g in grays)
        trimmed += found["trimmed"]
        result["plain"][name] = found
        print(f"{name}: {found}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("validation copies", "originals"):
            films = sets[name][: args.canvas]
            itself = probabilities(keep, films)
            for kind in ("jpeg", "png16"):
                views = [saved(canvas(g), kind, Path(tmp)) for g in films]
                row = {mode: compare(itself, probabilities(b, views), t)
                       for mode, b in (("keep", keep), ("trim", trim))}  # fmt: skip
                result["canvas"][f"{name}, {kind}"] = row
                print(f"canvas {name} {kind}: {row}")
    plain = result["plain"].values()
    total = sum(r["images"] for r in plain)
    rule1 = all(r["label_changes"] == 0 and r["max_dp"] <= 0.02 for r in plain)
    rule1 &= trimmed <= 0.05 * total
    rule2 = all(
        r["trim"]["label_changes"] <= r["trim"]["images"] / 100
        and r["trim"]["mean_dp"] <= 0.03
        and (
            r["trim"]["label_changes"] < r["keep"]["label_changes"]
            or r["trim"]["label_changes"] == r["keep"]["label_changes"] == 0
        )
        for r in result["canvas"].values()
    )
    result["adopt"] = {"rule 1": bool(rule1), "rule 2": bool(rule2), "trimmed": trimmed,
                       "of": total}  # fmt: skip
    print(json.dumps(result["adopt"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
