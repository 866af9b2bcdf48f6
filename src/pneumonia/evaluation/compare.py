"""`pneumonia compare`: several models side by side on the same images.

Each model is scored at its own stored operating point (threshold and calibration), with its
training time and device from its bundle, its parameter count, and its inference speed
measured here (network only, batches of 32, after decoding). Writes `comparison.md`,
`comparison.csv`, `comparison.json`, an overlaid `roc.png` and `reliability.png`.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core import LABELS
from pneumonia.core.bundle import META
from pneumonia.core.errors import DataError, PneumoniaError
from pneumonia.core.options import Scoring
from pneumonia.core.preprocess import Preprocessing
from pneumonia.evaluation.calibration import reliability_figure
from pneumonia.evaluation.evaluate import Item, Scored, select_items, subtype_result
from pneumonia.evaluation.metrics import binary_metrics
from pneumonia.evaluation.plots import roc_overlay
from pneumonia.evaluation.uncertainty import metric_intervals
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import (
    load_squares,
    network_scores,
    subtype_probability,
    to_probability,
)
from pneumonia.modeling.models import count_parameters

log = logging.getLogger(__name__)
COLUMNS = (
    "model", "architecture", "pretrained", "image_size", "parameters", "epochs",
    "train_time_s", "train_device", "infer_images_per_s", "roc_auc", "roc_auc_low",
    "roc_auc_high", "pr_auc", "threshold", "rule", "tuned_on_these_images", "sensitivity",
    "sensitivity_low", "sensitivity_high", "specificity", "specificity_low",
    "specificity_high", "tp", "fn", "tn", "fp", "subtype_roc_auc", "subtype_roc_auc_low",
    "subtype_roc_auc_high", "subtype_accuracy", "subtype_sensitivity_viral",
)  # fmt: skip


@dataclass
class Entry:
    """One model to compare: its display name and loaded bundle."""

    name: str
    bundle: Bundle


def resolve_entries(paths: list[Path]) -> list[Entry]:
    """Run folders (their `bundle/`) or bundle folders -> named, loaded bundles."""
    if len(paths) < 1:
        raise PneumoniaError("give at least one run folder or bundle to compare")
    entries: list[Entry] = []
    for path in paths:
        folder = path / "bundle" if (path / "bundle" / META).is_file() else path
        if not (folder / META).is_file():
            raise PneumoniaError(f"{path}: neither a run folder (with bundle/) nor a bundle")
        name = folder.parent.name if folder.name == "bundle" else folder.name
        taken = {e.name for e in entries}
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}-{n}", n + 1
        entries.append(Entry(unique, load_bundle(folder)))
    return entries


def _readable(
    items: list[Item], entries: list[Entry], workers: int | None, show: bool
) -> tuple[list[Item], dict[Preprocessing, list[np.ndarray]], list[dict[str, str]]]:
    """Decode the images once per contract; keep those every contract could read."""
    contracts = {e.bundle.contract: e for e in entries}
    loaded = {
        key: load_squares([it.path for it in items], e.bundle.contract, workers, show)
        for key, e in contracts.items()
    }
    bad = {i for squares in loaded.values() for i, sq in enumerate(squares) if isinstance(sq, str)}
    unreadable = []
    for i in sorted(bad):
        reason = next(sq for sq in (v[i] for v in loaded.values()) if isinstance(sq, str))
        unreadable.append({"path": items[i].path, "reason": str(reason)})
        log.warning("%s: %s (left out)", items[i].path, reason)
    keep = [i for i in range(len(items)) if i not in bad]
    squares = {k: [v[i] for i in keep] for k, v in loaded.items()}
    return [items[i] for i in keep], squares, unreadable  # type: ignore[return-value]


def same_source(a: str | None, b: str) -> bool:
    """Whether two data descriptions ("PATH split 'val'") name the same images."""
    if a is None:
        return False
    path_a, _, split_a = a.partition(" split ")
    path_b, _, split_b = b.partition(" split ")
    return split_a == split_b and Path(path_a).resolve() == Path(path_b).resolve()


def _row(
    entry: Entry,
    items: list[Item],
    labels: np.ndarray,
    raw: np.ndarray,
    speed: float,
    scoring: tuple[str, int],
) -> tuple[dict[str, Any], np.ndarray]:
    source, n_boot = scoring
    b, meta = entry.bundle, entry.bundle.meta
    probs = to_probability(raw, b.temperature)
    m = binary_metrics(labels, probs, b.threshold, report=False)
    patients = [it.patient for it in items]
    ci = metric_intervals(labels, probs, b.threshold, patients, n_boot) if n_boot else {}
    boot, exact = ci.get("bootstrap", {}), ci.get("clopper_pearson", {})
    config = meta.training.get("config", {})
    cm = m["confusion_matrix"]
    row = {
        "model": entry.name,
        "architecture": meta.architecture.name,
        "pretrained": config.get("model", {}).get("pretrained"),
        "image_size": meta.preprocessing.image_size,
        "parameters": count_parameters(b.model),
        "epochs": meta.training.get("epochs_run"),
        "train_time_s": meta.training.get("duration_s"),
        "train_device": meta.training.get("device"),
        "infer_images_per_s": round(speed, 1),
        "roc_auc": m["roc_auc"],
        "roc_auc_low": boot.get("roc_auc", [None, None])[0],
        "roc_auc_high": boot.get("roc_auc", [None, None])[1],
        "pr_auc": m["pr_auc"],
        "threshold": b.threshold,
        "rule": meta.threshold.rule,
        "tuned_on_these_images": same_source(meta.threshold.detail.get("data"), source),
        "sensitivity": m["sensitivity"],
        "sensitivity_low": exact.get("sensitivity", [None, None])[0],
        "sensitivity_high": exact.get("sensitivity", [None, None])[1],
        "specificity": m["specificity"],
        "specificity_low": exact.get("specificity", [None, None])[0],
        "specificity_high": exact.get("specificity", [None, None])[1],
        **{k: cm[k] for k in ("tp", "fn", "tn", "fp")},
    }
    return row, probs


def compare(
    paths: list[Path],
    data: str | Path,
    split: str,
    out: Path,
    scoring: Scoring | None = None,
) -> dict[str, Any]:
    """Score every model on the same images; write the table, CSV, JSON and figures."""
    scoring = scoring or Scoring()
    workers, show, n_boot = scoring.workers, scoring.show, scoring.n_boot
    entries = resolve_entries(paths)
    all_items, source = select_items(data, split)
    items, squares, unreadable = _readable(all_items, entries, workers, show)
    if not items:
        raise DataError(f"{source}: none of the {len(all_items)} images could be read")
    labels = np.array([LABELS.index(it.label) for it in items])
    rows, curves = [], {}
    for e in entries:
        contract = e.bundle.contract
        started = time.perf_counter()
        chosen = squares[contract]
        found = network_scores(e.bundle.model, contract, chosen, show=show, every_output=True)[0]
        speed = len(items) / (time.perf_counter() - started)
        row, probs = _row(e, items, labels, found[:, 0], speed, (source, n_boot))
        row.update(_subtype_columns(e, items, labels, probs, found, n_boot))
        rows.append(row)
        curves[e.name] = (probs, e.bundle.threshold)
    result = {
        "data": source,
        "n": len(items),
        "positives": int(labels.sum()),
        "models": rows,
        "unreadable": unreadable,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
    _write_csv(rows, out / "comparison.csv")
    (out / "comparison.md").write_text(markdown(result), encoding="utf-8")
    if len(np.unique(labels)) == 2:
        roc_overlay(labels, curves, out / "roc.png")
        reliability_figure(labels, {k: p for k, (p, _) in curves.items()}, out / "reliability.png")
    return result


def _subtype_columns(
    entry: Entry,
    items: list[Item],
    labels: np.ndarray,
    probs: np.ndarray,
    found: np.ndarray,
    n_boot: int,
) -> dict[str, Any]:
    """The subtype output's headline on these images (empty without a subtype head)."""
    bundle = entry.bundle
    if bundle.meta.subtype is None:
        return {}
    scored = Scored("", items, labels, found[:, 0], [], None, subtype_probability(bundle, found))
    section = subtype_result(bundle, scored, probs, n_boot) or {}
    m, ci = section.get("metrics", {}), section.get("intervals", {})
    low, high = ci.get("roc_auc", [None, None])
    return {
        "subtype_roc_auc": m.get("roc_auc"),
        "subtype_roc_auc_low": low,
        "subtype_roc_auc_high": high,
        "subtype_accuracy": m.get("accuracy"),
        "subtype_sensitivity_viral": m.get("sensitivity_viral"),
    }


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _with_ci(row: dict[str, Any], key: str) -> str:
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    ci = "" if low is None else f" ({_num(low, 3)}-{_num(high, 3)})"
    return _num(row[key]) + ci


def _duration(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def markdown(result: dict[str, Any]) -> str:
    """The comparison as a markdown table with its data and reading notes."""
    header = (
        "| model | architecture | ImageNet start | input | parameters | epochs | training time "
        "| inference images/s | ROC-AUC (95% CI) | PR-AUC | threshold (rule) "
        "| sensitivity (95% CI) | specificity (95% CI) |"
    )
    lines = [
        f"# Model comparison on {result['data']}",
        "",
        f"{result['n']} images, {result['positives']} PNEUMONIA. Each model at its own stored "
        "operating point. ROC-AUC intervals: bootstrap resampling patients; sensitivity and "
        "specificity: exact (Clopper-Pearson).",
        "",
        header,
        "|" + " --- |" * 3 + " ---: |" * 10,
    ]
    for r in result["models"]:
        mark = "*" if r["tuned_on_these_images"] else ""
        lines.append(
            f"| {r['model']} | {r['architecture']} | {'yes' if r['pretrained'] else 'no'} "
            f"| {r['image_size']} px | {r['parameters'] / 1e6:.2f} M | {r['epochs']} "
            f"| {_duration(r['train_time_s'])} ({r['train_device']}) "
            f"| {r['infer_images_per_s']:.0f} | {_with_ci(r, 'roc_auc')} | {_num(r['pr_auc'])} "
            f"| {r['threshold']:.3g}{mark} ({r['rule']}) | {_with_ci(r, 'sensitivity')} "
            f"| {_with_ci(r, 'specificity')} |"
        )
    headed = [r for r in result["models"] if r.get("subtype_roc_auc") is not None]
    if headed:
        lines += ["", "Subtype output (bacterial against viral, on the PNEUMONIA images whose "
                  "names give it; viral positive):", "",
                  "| model | ROC-AUC (95% CI) | accuracy | viral sensitivity |",
                  "| --- | ---: | ---: | ---: |"]  # fmt: skip
        lines += [
            f"| {r['model']} | {_with_ci(r, 'subtype_roc_auc')} | {_num(r['subtype_accuracy'])} "
            f"| {_num(r['subtype_sensitivity_viral'])} |"
            for r in headed
        ]
    if any(r["tuned_on_these_images"] for r in result["models"]):
        lines += [
            "",
            "\\* threshold chosen on these same images: its sensitivity and specificity are "
            "in-sample (ROC-AUC and PR-AUC are not affected).",
        ]
    if result["unreadable"]:
        lines += ["", f"{len(result['unreadable'])} unreadable images left out (see JSON)."]
    return "\n".join(lines) + "\n"
