"""`pneumonia data check`: a sanity report of a dataset, as JSON and PNG figures.

Counts per split and class, class balance, image sizes and modes, unreadable files (with the
reason), exact duplicates by content hash (within and across splits), and patients that
appear in more than one split. Bad files are reported and excluded, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pneumonia.core import LABELS
from pneumonia.core.errors import ImageError
from pneumonia.core.progress import parallel_map
from pneumonia.data.discover import SPLITS, Problem, Sample, discover
from pneumonia.data.image_io import read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageFacts:
    """What the check learns from decoding one image."""

    sha256: str
    width: int
    height: int
    mode: str


def inspect(path: str) -> ImageFacts | Problem:
    """Decode one image fully (truncation shows only then); a Problem when it fails."""
    try:
        digest, img = read_image(path)
    except ImageError as exc:
        return Problem(exc.path, exc.reason)
    return ImageFacts(digest, img.width, img.height, img.mode)


def _split_name(split: str) -> str:
    return split or "(no split)"


def _duplicates(samples: list[Sample], facts: dict[str, ImageFacts]) -> list[dict[str, Any]]:
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.path in facts:
            by_hash[facts[s.path].sha256].append(s)
    groups = []
    for digest, group in sorted(by_hash.items()):
        if len(group) > 1:
            splits = sorted({_split_name(s.split) for s in group})
            groups.append(
                {
                    "sha256": digest,
                    "paths": [s.path for s in group],
                    "labels": sorted({s.label for s in group}),
                    "splits": splits,
                    "cross_split": len(splits) > 1,
                }
            )
    return groups


def _patients_across_splits(samples: list[Sample]) -> list[dict[str, Any]]:
    splits: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        if not s.patient.startswith("image:"):
            splits[s.patient].add(_split_name(s.split))
    return [{"patient": p, "splits": sorted(v)} for p, v in sorted(splits.items()) if len(v) > 1]


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def build_report(root: str | Path, workers: int | None = None, show: bool = True) -> dict[str, Any]:
    """Inspect every image under `root` and return the report as plain data."""
    found = discover(root)
    results = parallel_map(inspect, [s.path for s in found.samples], "checking", workers, show)
    facts: dict[str, ImageFacts] = {}
    unreadable = []
    for s, r in zip(found.samples, results, strict=True):
        if isinstance(r, Problem):
            unreadable.append({"path": r.path, "reason": r.message})
        else:
            facts[s.path] = r
    order = {name: i for i, name in enumerate(SPLITS)}
    good = sorted(
        (s for s in found.samples if s.path in facts), key=lambda s: (order.get(s.split, 9), s.path)
    )
    counts: dict[str, dict[str, int]] = {}
    for s in good:
        counts.setdefault(_split_name(s.split), dict.fromkeys(LABELS, 0))[s.label] += 1
    totals = {lab: sum(c[lab] for c in counts.values()) for lab in LABELS}
    balance = {
        split: {lab: round(c[lab] / max(1, sum(c.values())), 4) for lab in LABELS}
        for split, c in counts.items()
    }
    duplicates = _duplicates(good, facts)
    return {
        "root": str(root),
        "layout": found.layout,
        "images": len(good),
        "counts": counts,
        "totals": totals,
        "class_balance": balance,
        "sizes": {
            "width": _stats([f.width for f in facts.values()]),
            "height": _stats([f.height for f in facts.values()]),
        },
        "modes": dict(Counter(f.mode for f in facts.values()).most_common()),
        "unreadable": unreadable,
        "duplicates": duplicates,
        "duplicates_cross_split": sum(d["cross_split"] for d in duplicates),
        "patients_across_splits": _patients_across_splits(good),
        "problems": [asdict(p) for p in found.problems],
        "_facts": facts,
    }


def write_figures(report: dict[str, Any], out: Path) -> list[Path]:
    """Class balance, size histograms and mode counts as PNG files in `out`."""
    facts: dict[str, ImageFacts] = report["_facts"]
    paths = []
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    splits = list(report["counts"])
    for i, lab in enumerate(LABELS):
        values = [report["counts"][s][lab] for s in splits]
        bars = ax.bar([x + i * 0.4 for x in range(len(splits))], values, width=0.4, label=lab)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks([x + 0.2 for x in range(len(splits))], splits)
    ax.set(title="Images per split and class", ylabel="images")
    ax.legend()
    paths.append(_save(fig, out / "class_balance.png"))

    fig = Figure(figsize=(8, 3.2))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("width", "height"), strict=True):
        ax.hist([getattr(f, key) for f in facts.values()], bins=30, color="#4c72b0")
        ax.set(title=f"Image {key} (pixels)", xlabel=key, ylabel="images")
    paths.append(_save(fig, out / "image_sizes.png"))

    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    modes = report["modes"]
    ax.bar(list(modes), list(modes.values()), color="#55a868")
    ax.set(title="Image modes", ylabel="images")
    paths.append(_save(fig, out / "image_modes.png"))
    return paths


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_report(report: dict[str, Any], out: Path) -> Path:
    """Write `report.json` and the figures into `out` (which must exist)."""
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    public["figures"] = [p.name for p in write_figures(report, out)]
    path = out / "report.json"
    path.write_text(json.dumps(public, indent=2), encoding="utf-8")
    return path
