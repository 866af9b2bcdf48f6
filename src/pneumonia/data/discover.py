"""Find the images of a dataset in any layout people download, with labels, splits, patients.

Layouts: Kaggle folder trees (`[split/]{NORMAL,PNEUMONIA}/*`, nested or not, with `__MACOSX`
and `.DS_Store` litter), a MedMNIST `pneumoniamnist*.npz`, or a CSV of `path,label`
(optionally `patient`, `split`). Labels are matched case-insensitively to `LABELS`; anything
else is reported as a `Problem`, never guessed.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pneumonia.core import LABELS, SUBTYPES
from pneumonia.core.errors import DataError
from pneumonia.data.image_io import IMAGE_SUFFIXES, npz_arrays, npz_ref

SPLITS = ("train", "val", "test")
LITTER = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})
MAX_SEARCH_DEPTH = 4

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-", re.IGNORECASE),
    re.compile(r"^(?:NORMAL|BACTERIA|VIRUS)-(\d+)-", re.IGNORECASE),  # Mendeley v3, by number
)
_SUBTYPE_PATTERN = re.compile(r"(?:^|[_-])(bacteria|bacterial|virus|viral)(?:[_-]|$)", re.I)


@dataclass(frozen=True)
class Sample:
    """One labelled image. `split` is train/val/test, or '' when the layout has no splits."""

    path: str
    label: str
    split: str
    patient: str


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file or folder; `error` means the data cannot be used as is."""

    path: str
    message: str
    severity: Literal["error", "warning"] = "warning"


@dataclass
class Discovery:
    """What `discover` found: the samples it can use and the problems it excluded."""

    root: str
    layout: str
    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def patient_id(path: str) -> str:
    """Patient from a Kaggle file name (`personN_*`, `IM-XXXX-*`, `NORMAL2-IM-XXXX-*`) or a
    Mendeley v3 one (`NORMAL-N-*`, `BACTERIA-N-*`, `VIRUS-N-*`).

    Unknown names get one id per image (the path), so they are never wrongly grouped.
    """
    name = Path(path).name
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(name)
        if match:
            return match.group(1).lower() if name.lower().startswith("person") else match.group(1)
    return f"image:{path}"


def subtype_of(path: str, label: str) -> str | None:
    """Pneumonia subtype from a file name: `bacterial` or `viral` for PNEUMONIA images named
    as the Kaggle and Mendeley copies are (`person1_bacteria_1.jpeg`, `person3_virus_7.jpeg`,
    `BACTERIA-1008087-0001.jpeg`, `VIRUS-1037162-0001.jpeg`); None for NORMAL images and for
    names that do not say."""
    if label != "PNEUMONIA":
        return None
    match = _SUBTYPE_PATTERN.search(Path(path.split("#", 1)[0]).stem)
    if match is None:
        return None
    return SUBTYPES[0] if match.group(1).lower().startswith("bacteri") else SUBTYPES[1]


def match_label(name: str) -> str | None:
    """Case-insensitive label match; None for anything that is not exactly a label."""
    upper = name.strip().upper()
    return upper if upper in LABELS else None


def _is_litter(p: Path) -> bool:
    return p.name in LITTER or p.name.startswith(".")


def _label_dirs(d: Path) -> list[Path]:
    return [c for c in _subdirs(d) if match_label(c.name)]


def _subdirs(d: Path) -> list[Path]:
    return sorted(c for c in d.iterdir() if c.is_dir() and not _is_litter(c))


def _is_dataset_root(d: Path) -> bool:
    if _label_dirs(d):
        return True
    return any(c.name.lower() in SPLITS and _label_dirs(c) for c in _subdirs(d))


def _find_dataset_root(root: Path) -> Path | None:
    """Shallowest folder holding label folders (directly or under split folders)."""
    frontier: deque[tuple[Path, int]] = deque([(root, 0)])
    found: list[Path] = []
    found_depth = None
    while frontier:
        d, depth = frontier.popleft()
        if found_depth is not None and depth > found_depth:
            break
        if _is_dataset_root(d):
            found.append(d)
            found_depth = depth
            continue
        if depth < MAX_SEARCH_DEPTH:
            frontier.extend((c, depth + 1) for c in _subdirs(d))
    if len(found) > 1:
        listed = ", ".join(str(f) for f in found)
        raise DataError(f"{root}: found several datasets ({listed}); point at one of them")
    return found[0] if found else None


def _scan_label_dir(d: Path, label: str, split: str, out: Discovery) -> None:
    count = 0
    for f in sorted(d.iterdir()):
        if _is_litter(f):
            continue
        if f.is_dir():
            out.problems.append(Problem(str(f), "subfolder inside a label folder, ignored"))
        elif f.suffix.lower() in IMAGE_SUFFIXES:
            path = str(f.resolve())
            out.samples.append(Sample(path, label, split, patient_id(path)))
            count += 1
        else:
            out.problems.append(Problem(str(f), f"not an image file ({f.suffix or 'no suffix'})"))
    if count == 0:
        out.problems.append(Problem(str(d), f"label folder {label} has no images", "error"))


def _scan_split_dir(d: Path, split: str, out: Discovery) -> None:
    seen: set[str] = set()
    for child in sorted(d.iterdir()):
        if _is_litter(child):
            continue
        label = match_label(child.name) if child.is_dir() else None
        if label:
            seen.add(label)
            _scan_label_dir(child, label, split, out)
        elif child.is_dir():
            msg = f"unrecognised label folder {child.name!r} (expected {' or '.join(LABELS)})"
            out.problems.append(Problem(str(child), msg + "; its files are excluded"))
        else:
            out.problems.append(Problem(str(child), "file outside a label folder, excluded"))
    for label in LABELS:
        if label not in seen:
            where = f"split {split!r}" if split else str(d)
            out.problems.append(Problem(str(d), f"{where} has no {label} folder", "error"))


def _discover_folders(root: Path, dataset_root: Path) -> Discovery:
    out = Discovery(str(root), "folders")
    if _label_dirs(dataset_root):
        name = dataset_root.name.lower()
        _scan_split_dir(dataset_root, name if name in SPLITS else "", out)
        return out
    out.layout = "split folders"
    for child in _subdirs(dataset_root):
        if child.name.lower() in SPLITS:
            _scan_split_dir(child, child.name.lower(), out)
        else:
            out.problems.append(
                Problem(str(child), "folder is not a split (train/val/test), ignored")
            )
    return out


def _discover_npz(path: Path) -> Discovery:
    out = Discovery(str(path), "medmnist npz")
    try:
        arrays = npz_arrays(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read npz file ({exc})") from None
    splits = [s for s in SPLITS if f"{s}_images" in arrays]
    if not splits:
        raise DataError(f"{path}: not a MedMNIST file (no train_images/val_images/test_images)")
    resolved = path.resolve()
    for split in splits:
        labels = arrays.get(f"{split}_labels")
        images = arrays[f"{split}_images"]
        if labels is None or len(labels) != len(images):
            raise DataError(f"{path}: {split}_labels missing or not one per image")
        for i, value in enumerate(np.asarray(labels).reshape(len(labels), -1)[:, 0]):
            ref = npz_ref(resolved, split, i)
            if value not in (0, 1):
                msg = f"label {value.item()!r} is not 0 (NORMAL) or 1 (PNEUMONIA), excluded"
                out.problems.append(Problem(ref, msg))
                continue
            out.samples.append(Sample(ref, LABELS[int(value)], split, f"image:{ref}"))
    return out


def _discover_csv(path: Path) -> Discovery:
    out = Discovery(str(path), "csv")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            header = [h.strip().lower() for h in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None
    if not rows or not {"path", "label"} <= set(header):
        raise DataError(f"{path}: CSV needs a header with at least the columns path,label")
    for line, row in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        where = f"{path}:{line}"
        label = match_label(row["label"])
        split = row.get("split", "").lower()
        file = (path.parent / row["path"]).resolve()
        if not label:
            out.problems.append(Problem(where, f"unrecognised label {row['label']!r}, excluded"))
        elif split and split not in SPLITS:
            out.problems.append(Problem(where, f"unrecognised split {split!r}, excluded"))
        elif not file.is_file():
            out.problems.append(Problem(where, f"{file}: file not found, excluded"))
        else:
            patient = row.get("patient") or patient_id(str(file))
            out.samples.append(Sample(str(file), label, split, patient))
    return out


def name_list(path: Path) -> set[str]:
    """The file names a list file holds, one per line (blank lines skipped), such as
    `pairs --only` and `data.pairs.only` read. Missing, unreadable or empty is an error."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (a list of file names, one a line)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DataError(f"{path}: cannot read the list of file names ({reason})") from None
    names = {line.strip() for line in lines if line.strip()}
    if not names:
        raise DataError(f"{path}: lists no file names (one a line)")
    return names


def discover(root: str | Path) -> Discovery:
    """Find every labelled image under `root` (folder, `.npz` or `.csv`) and what is wrong."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_file():
        found = _discover_file(root)
    else:
        dataset_root = _find_dataset_root(root)
        if dataset_root is not None:
            found = _discover_folders(root, dataset_root)
        else:
            found = _discover_file(_single_data_file(root))
    found.samples.sort(key=lambda s: s.path)
    if not found.samples:
        raise DataError(f"{root}: no usable images found ({len(found.problems)} problems)")
    return found


def _discover_file(path: Path) -> Discovery:
    if path.suffix.lower() == ".npz":
        return _discover_npz(path)
    if path.suffix.lower() == ".csv":
        return _discover_csv(path)
    raise DataError(f"{path}: not a dataset (expected a folder, a MedMNIST .npz or a .csv)")


def _single_data_file(root: Path) -> Path:
    files = sorted(root.glob("pneumoniamnist*.npz")) + sorted(root.glob("*.csv"))
    if len(files) == 1:
        return files[0]
    expected = (
        "expected [split/]NORMAL|PNEUMONIA folders (train/val/test splits), "
        "a pneumoniamnist*.npz or a path,label CSV"
    )
    if files:
        listed = ", ".join(f.name for f in files)
        raise DataError(f"{root}: several data files ({listed}); point at one. {expected}")
    raise DataError(f"{root}: unrecognised dataset layout; {expected}")
