"""Does the input door read an original's DICOM and 16-bit PNG exports as the original itself?

    .venv/bin/python benchmarks/quality/door_renderings.py [--originals DIR] [--before REV]

For every original (JPEG or PNG under DIR, default ../shared/data/originals), its renderings
`dicom_m2_12`, `dicom_m1_16` and `png16` (`pneumonia.data.renderings`: the same 8-bit pixels
stored as 12- or 16-bit DICOM and 16-bit PNG) are decoded through the door and compared,
pixel for pixel, with the original decoded. Counts the originals where any differs, with the
door of this checkout and, with `--before REV`, with the door of commit REV (its
`data/image_io.py`, read with `git show`).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ORIGINALS, REPO, machine, print_table

from pneumonia.data.image_io import decode_image
from pneumonia.data.renderings import render

LOSSLESS = ("dicom_m2_12", "dicom_m1_16", "png16")


def door_at(rev: str, folder: Path) -> ModuleType:
    """The `image_io` module of commit `rev`, loaded beside today's package."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/pneumonia/data/image_io.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = folder / f"image_io_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def count(files: list[Path], doors: dict[str, Any]) -> dict[str, int]:
    """Per door, the originals whose lossless renderings do not all decode to their pixels."""
    differ = dict.fromkeys(doors, 0)
    for f in files:
        data = f.read_bytes()
        pixels = decode_image(data, f).pixels
        views = [render(name, data, pixels) for name in LOSSLESS]
        for which, door in doors.items():
            same = all(np.array_equal(door(v, f).pixels, pixels) for v in views)
            differ[which] += not same
    return differ


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=Path, default=ORIGINALS)
    parser.add_argument("--before", help="also the door of this commit")
    args = parser.parse_args(argv)
    files = sorted(
        p for p in args.originals.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png")
    )
    if not files:
        raise SystemExit(f"{args.originals}: no JPEG or PNG originals")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        doors: dict[str, Any] = {"now": decode_image}
        if args.before:
            doors[args.before] = door_at(args.before, Path(tmp)).decode_image
        differ = count(files, doors)
    seconds = time.perf_counter() - started
    print(f"{len(files)} originals, renderings {', '.join(LOSSLESS)}; {machine()}, {seconds:.0f} s")
    rows = [[which, f"{n} of {len(files)}"] for which, n in differ.items()]
    print_table(["door", "originals whose renderings decode to other pixels"], rows)
    return {"originals": len(files), "differ": differ}


if __name__ == "__main__":
    main()
