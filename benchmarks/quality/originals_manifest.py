"""Real-files study (issue 34): half A of the originals' patients joins training, half B never.

    .venv/bin/python benchmarks/quality/originals_manifest.py [--manifest work/manifest.csv]
        [--originals ../shared/data/originals] [--out work/manifest-originals.csv]

The patients of `originals/` (all training-split patients of the fixed split) are sorted and
permuted with seed 0; the first half is A. Writes the training manifest with half A's
originals added as training images of their own (same label and patient as their copies; the
split is unchanged), and `originals-halves.json` beside it naming every original's half, which
`pairs_study.py` reads to score half B only. Refuses to run if an original's patient is not a
training patient of the manifest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pneumonia.data.discover import discover
from pneumonia.data.split import Row, content_hash, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[2]
ORIGINALS = REPO.parent / "shared" / "data" / "originals"


def halves(patients: list[str], seed: int = 0) -> dict[str, str]:
    """Each patient's half, A or B: sorted ids permuted by `seed`, the first half A."""
    ordered = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(ordered))
    cut = len(ordered) // 2
    return {ordered[i]: ("A" if rank < cut else "B") for rank, i in enumerate(order)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--originals", type=Path, default=ORIGINALS)
    parser.add_argument("--out", type=Path, default=Path("work/manifest-originals.csv"))
    parser.add_argument("--force", action="store_true", help="replace a different manifest")
    args = parser.parse_args()
    rows = read_manifest(args.manifest)
    split_of = {r.patient: r.split for r in rows}
    originals = discover(args.originals).samples
    strangers = [s.path for s in originals if split_of.get(s.patient) != "train"]
    if strangers:
        raise SystemExit(
            f"{strangers[0]}: its patient is not a training patient of {args.manifest}"
        )
    half = halves([s.patient for s in originals])
    added = []
    for s in originals:
        if half[s.patient] == "A":
            digest = content_hash(s.path)
            if not isinstance(digest, str):
                raise SystemExit(f"{s.path}: {digest.message}")
            added.append(Row(s.path, s.label, s.patient, "train", digest))
    combined = sorted(rows + added, key=lambda r: (r.split, r.label, r.path))
    write_manifest(combined, args.out, args.force)
    record = {
        "manifest": str(args.manifest),
        "originals": str(args.originals),
        "seed": 0,
        "files": {Path(s.path).name: half[s.patient] for s in originals},
    }
    (args.out.parent / "originals-halves.json").write_text(json.dumps(record, indent=1) + "\n")
    for h in "AB":  # `pneumonia pairs --only` reads these
        names = sorted(n for n, v in record["files"].items() if v == h)
        (args.out.parent / f"originals-half-{h}.txt").write_text("\n".join(names) + "\n")
    counts = {h: sum(v == h for v in record["files"].values()) for h in "AB"}
    patients = {h: sum(v == h for v in half.values()) for h in "AB"}
    print(f"{args.out}: {len(rows)} rows + {len(added)} originals of half A")
    for h in "AB":
        print(f"half {h}: {counts[h]} originals of {patients[h]} patients")


if __name__ == "__main__":
    main()
