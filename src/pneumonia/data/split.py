"""Split manifests: one CSV row per image with label, patient, split and content hash.

Validation is carved from the training pool, stratified by class and grouped by patient (and
by identical content, so an exact copy never lands on both sides). The official test split is
never moved. The same inputs and seed always give the identical manifest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pneumonia.core import LABELS
from pneumonia.core.errors import DataError, ImageError
from pneumonia.core.progress import parallel_map
from pneumonia.data.discover import Problem, Sample, discover
from pneumonia.data.image_io import read_image, split_npz_ref

log = logging.getLogger(__name__)
COLUMNS = ("path", "label", "patient", "split", "sha256")


@dataclass(frozen=True)
class Row:
    """One manifest row."""

    path: str
    label: str
    patient: str
    split: str
    sha256: str


def content_hash(path: str) -> str | Problem:
    """sha256 of a file's bytes (of the pixels for npz images), or the problem reading it."""
    try:
        if split_npz_ref(path) is not None:
            return read_image(path)[0]
        data = Path(path).read_bytes()
    except ImageError as exc:
        return Problem(exc.path, exc.reason)
    except OSError as exc:
        return Problem(path, f"cannot read file ({exc.strerror or exc})")
    if not data:
        return Problem(path, "file is empty (0 bytes), excluded")
    return hashlib.sha256(data).hexdigest()


def hash_samples(
    samples: list[Sample], workers: int | None = None, show: bool = True
) -> tuple[list[Row], list[Problem]]:
    """Hash every sample's content; unreadable ones become problems instead of rows."""
    hashes = parallel_map(content_hash, [s.path for s in samples], "hashing", workers, show)
    rows, problems = [], []
    for s, h in zip(samples, hashes, strict=True):
        if isinstance(h, Problem):
            problems.append(h)
        else:
            rows.append(Row(s.path, s.label, s.patient, s.split, h))
    return rows, problems


def _groups(rows: list[Row]) -> np.ndarray:
    """Group index per row: rows sharing a patient or identical content share a group."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        for key in (f"patient:{r.patient}", f"sha:{r.sha256}"):
            j = first.setdefault(key, i)
            parent[find(i)] = find(j)
    return np.array([find(i) for i in range(len(rows))])


def carve_validation(pool: list[Row], val_fraction: float, seed: int) -> list[Row]:
    """Assign `val` to about `val_fraction` of `pool` (grouped, stratified); the rest `train`."""
    labels = np.array([LABELS.index(r.label) for r in pool])
    missing = [lab for i, lab in enumerate(LABELS) if not (labels == i).any()]
    if missing:
        raise DataError(f"the training pool has no {' or '.join(missing)} images; cannot split")
    groups = _groups(pool)
    n_splits = max(2, round(1 / val_fraction))
    per_class_groups = min(len(set(groups[labels == i])) for i in range(len(LABELS)))
    if per_class_groups < n_splits:
        fix = (
            f"set data.val_fraction to at least {1 / per_class_groups:.2f} or add data"
            if per_class_groups > 2
            else "add data: each class needs at least 3 patients"
        )
        raise DataError(
            f"too few patients ({per_class_groups} in the smaller class) to carve a "
            f"validation split of {val_fraction:.0%}; {fix}"
        )
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, val_idx = next(folds.split(np.zeros(len(pool)), labels, groups))
    val = set(val_idx.tolist())
    return [replace(r, split="val" if i in val else "train") for i, r in enumerate(pool)]


def fold_manifests(rows: list[Row], k: int, seed: int) -> list[list[Row]]:
    """K manifests for cross-fitting: in manifest i, fold i of the training rows is `val` and
    the other folds `train` (stratified by class, grouped by patient and identical content,
    as validation is carved); the manifest's own `val` rows become `test`, held out of every
    fold; its `test` rows are left out."""
    pool = [r for r in rows if r.split == "train"]
    held = [replace(r, split="test") for r in rows if r.split == "val"]
    labels = np.array([LABELS.index(r.label) for r in pool])
    groups = _groups(pool)
    fewest = min(len(set(groups[labels == i])) for i in range(len(LABELS)))
    if k < 2 or fewest < k:
        raise DataError(
            f"{k} folds need at least {max(k, 2)} patients of each class in the training "
            f"split (the smaller class has {fewest}); use fewer folds or more data"
        )
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    manifests = []
    for _, val_idx in folds.split(np.zeros(len(pool)), labels, groups):
        val = set(val_idx.tolist())
        fold = [replace(r, split="val" if i in val else "train") for i, r in enumerate(pool)]
        manifests.append(sorted(fold + held, key=lambda r: (r.split, r.label, r.path)))
    return manifests


def assign_splits(
    rows: list[Row], val_fraction: float, seed: int, official_val: str = "fold"
) -> list[Row]:
    """Final splits: test kept; official val folded into training (or kept); val carved."""
    rows = sorted(rows, key=lambda r: r.path)
    test = [r for r in rows if r.split == "test"]
    kept = [r for r in rows if r.split == "val" and official_val == "keep"]
    pool = [r for r in rows if r.split in ("train", "") or (r.split == "val" and not kept)]
    if kept:
        log.info("keeping the dataset's own val split (%d images) as validation", len(kept))
        split_rows = [replace(r, split="train") for r in pool] + kept
    else:
        split_rows = carve_validation(pool, val_fraction, seed)
    test_hashes = {r.sha256 for r in test}
    leaked = sum(r.sha256 in test_hashes for r in split_rows)
    if leaked:
        log.warning("%d train/val images are exact copies of test images", leaked)
    return sorted(split_rows + test, key=lambda r: (r.split, r.label, r.path))


def render(rows: list[Row]) -> str:
    """Manifest rows as CSV text (the exact bytes written to disk)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([getattr(r, c) for c in COLUMNS] for r in rows)
    return buf.getvalue()


def write_manifest(rows: list[Row], path: Path, force: bool = False) -> bool:
    """Write the manifest; True when written, False when an identical one was already there.

    A different existing file is never overwritten unless `force`.
    """
    text = render(rows)
    if path.exists():
        if path.read_text(encoding="utf-8") == text:
            return False
        if not force:
            raise DataError(
                f"{path}: a different manifest already exists; use --force to replace it"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def read_manifest(path: str | Path) -> list[Row]:
    """Read and validate a manifest CSV written by `write_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; run `pneumonia data split DIR` first")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DataError(f"{path}: not a manifest (expected columns {','.join(COLUMNS)})")
        rows = [Row(**{c: r[c] for c in COLUMNS}) for r in reader]
    bad = [r for r in rows if r.label not in LABELS]
    if bad:
        raise DataError(f"{path}: row for {bad[0].path} has unknown label {bad[0].label!r}")
    return rows


def manifest_digest(path: str | Path) -> str:
    """sha256 of the manifest file, recorded by models trained on it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def summarize(rows: list[Row]) -> dict[str, dict[str, int]]:
    """Image counts per split and label."""
    counts = Counter((r.split, r.label) for r in rows)
    splits = sorted({r.split for r in rows})
    return {s: {lab: counts[(s, lab)] for lab in LABELS} for s in splits}


def make_manifest(
    root: str | Path,
    val_fraction: float = 0.1,
    seed: int = 42,
    official_val: str = "fold",
    workers: int | None = None,
    show: bool = True,
) -> tuple[list[Row], list[Problem]]:
    """Discover `root`, hash every image and assign splits. Returns rows and problems."""
    found = discover(root)
    errors = [p for p in found.problems if p.severity == "error"]
    if errors:
        raise DataError(f"{errors[0].path}: {errors[0].message}")
    rows, problems = hash_samples(found.samples, workers, show)
    return assign_splits(rows, val_fraction, seed, official_val), found.problems + problems
