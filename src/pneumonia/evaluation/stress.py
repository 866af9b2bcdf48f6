"""`pneumonia stress`: how a bundle holds up under realistic acquisition shifts.

Every labelled image of a split is read once through the input door, shifted by each shift of
`pneumonia.data.shifts` (seeded, so the suite is the same on every run), put through the bundle's
own preprocessing contract and scored. Per shift: ROC-AUC with a patient-bootstrap interval,
sensitivity and specificity at the bundle's stored threshold, the change from the clean
images, and the worst case over the shifts a model should answer (an inverted image is
reported but not counted: it should be refused, not answered). Writes `stress.json`,
`stress.csv`, `stress.png` (the figure), `shifts.png` (one image under every shift) and
`stress_logits.npz` (every view's raw logits, with each image's path, label and patient, for
studying threshold rules offline).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from pneumonia.core import LABELS
from pneumonia.core.errors import DataError
from pneumonia.core.options import Scoring
from pneumonia.core.preprocess import Preprocessing
from pneumonia.core.progress import parallel_map
from pneumonia.data.shifts import CLEAN, SHIFTS, resolve, views_job
from pneumonia.evaluation.evaluate import select_items
from pneumonia.evaluation.uncertainty import bootstrap
from pneumonia.inference.loading import Bundle
from pneumonia.inference.predictions import check_operating_point, network_scores, to_probability

log = logging.getLogger(__name__)
CHUNK = 512  # images decoded and shifted at a time (bounds memory on large sets)


@dataclass
class Views:
    """Raw logits of every readable image under each view (clean first)."""

    names: list[str]
    logits: np.ndarray  # (views, images)
    readable: list[int]  # indices into the input paths
    unreadable: list[dict[str, str]]
    example: np.ndarray | None  # the first readable image's views, for the gallery


def view_logits(
    model: Any,
    contract: Preprocessing,
    paths: list[str],
    shifts: list[str],
    seed: int = 0,
    workers: int | None = None,
    show: bool = True,
) -> Views:
    """Logits of `model` (a PyTorch module or an ONNX Runtime model) for every path, clean and
    under each of `shifts`."""
    names = [CLEAN, *shifts]
    per_view: list[list[np.ndarray]] = [[] for _ in names]
    readable, unreadable, example = [], [], None
    model.eval()
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        jobs = [(p, tuple(shifts), seed, contract) for p in chunk]
        loaded = parallel_map(views_job, jobs, "shifting images", workers, show)
        good = [(start + i, v) for i, v in enumerate(loaded) if not isinstance(v, str)]
        pairs = zip(chunk, loaded, strict=True)
        unreadable += [{"path": p, "reason": v} for p, v in pairs if isinstance(v, str)]
        if not good:
            continue
        readable += [i for i, _ in good]
        if example is None:
            example = good[0][1]
        for k in range(len(names)):
            squares = [v[k] for _, v in good]
            per_view[k].append(network_scores(model, contract, squares)[0])
    for u in unreadable:
        log.warning("%s: %s (left out)", u["path"], u["reason"])
    if not readable:
        raise DataError(f"none of the {len(paths)} images could be read")
    logits = np.stack([np.concatenate(parts) for parts in per_view])
    return Views(names, logits, readable, unreadable, example)


def split_views(
    views: Views, labels: list[int]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(labels of the readable images, clean logits, shifted logits by view name); `labels`
    holds one label index per input path."""
    kept = np.array([labels[i] for i in views.readable])
    return kept, views.logits[0], dict(zip(views.names[1:], views.logits[1:], strict=True))


def _auc(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(roc_auc_score(labels, probs)) if len(np.unique(labels)) == 2 else float("nan")


def shift_row(
    name: str,
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    patients: list[str],
    n_boot: int,
) -> dict[str, Any]:
    """ROC-AUC (with a patient-bootstrap interval) and sens/spec at `threshold` of one view."""
    pred = probs >= threshold
    pos, neg = labels == 1, labels == 0
    row: dict[str, Any] = {
        "shift": name,
        "group": SHIFTS[name].group if name in SHIFTS else "none",
        "description": SHIFTS[name].description if name in SHIFTS else "the images as they are",
        "scored": SHIFTS[name].scored if name in SHIFTS else True,
        "n": len(labels),
        "roc_auc": _auc(labels, probs),
        "sensitivity": float(pred[pos].mean()) if pos.any() else float("nan"),
        "specificity": float((~pred[neg]).mean()) if neg.any() else float("nan"),
    }
    ci = (float("nan"), float("nan"))
    if n_boot > 0:
        ci = bootstrap(labels, probs, lambda y, p: {"auc": _auc(y, p)}, patients, n_boot)["auc"]
    row["roc_auc_ci"] = list(ci)
    return row


def _worst(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rows if r["shift"] != CLEAN and r["scored"]]
    out: dict[str, Any] = {}
    for key in ("roc_auc", "sensitivity", "specificity"):
        finite = [r for r in scored if not np.isnan(r[key])]
        if finite:
            low = min(finite, key=lambda r: r[key])
            out[key] = {"value": low[key], "shift": low["shift"], "change": low[f"delta_{key}"]}
    groups = sorted({r["group"] for r in scored})
    out["by_group"] = {
        g: min((r for r in scored if r["group"] == g), key=lambda r: r["roc_auc"])["shift"]
        for g in groups
    }
    return out


def stress(
    bundle: Bundle,
    data: str | Path,
    split: str,
    out: Path,
    seed: int = 0,
    shifts: list[str] | None = None,
    scoring: Scoring | None = None,
) -> dict[str, Any]:
    """Run the shift suite on `split` of `data`; write JSON, CSV and figures into `out`
    (`scoring`: workers, progress bar and bootstrap resamples, 200 by default)."""
    scoring = scoring or Scoring(n_boot=200)
    workers, show, n_boot = scoring.workers, scoring.show, scoring.n_boot
    check_operating_point(bundle)
    try:
        names = resolve(shifts)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    items, source = select_items(data, split)
    views = view_logits(
        bundle.model, bundle.contract, [it.path for it in items], names, seed, workers, show
    )
    kept = [items[i] for i in views.readable]
    labels = np.array([LABELS.index(it.label) for it in kept])
    patients = [it.patient for it in kept]
    rows = []
    for name, z in zip(views.names, views.logits, strict=True):
        probs = to_probability(z, bundle.temperature)
        rows.append(shift_row(name, labels, probs, bundle.threshold, patients, n_boot))
    for r in rows:
        for key in ("roc_auc", "sensitivity", "specificity"):
            r[f"delta_{key}"] = r[key] - rows[0][key]
    result = {
        "bundle": str(bundle.path),
        "architecture": bundle.meta.architecture.name,
        "data": source,
        "split": split,
        "seed": seed,
        "threshold": bundle.threshold,
        "threshold_rule": bundle.meta.threshold.rule,
        "n_boot": n_boot,
        "positives": int(labels.sum()),
        "negatives": int(len(labels) - labels.sum()),
        "shifts": rows,
        "worst": _worst(rows),
        "unreadable": views.unreadable,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "stress.json").write_text(json.dumps(result, indent=2) + "\n")
    _write_csv(rows, out / "stress.csv")
    np.savez_compressed(
        out / "stress_logits.npz",
        names=np.array(views.names),
        logits=views.logits,
        labels=labels,
        patients=np.array(patients),
        paths=np.array([it.path for it in kept]),
        temperature=bundle.temperature,
        threshold=bundle.threshold,
    )
    stress_figure(rows, bundle.threshold, out / "stress.png")
    if views.example is not None:
        shifts_gallery(views.names, views.example, out / "shifts.png")
    return result


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns = ["shift", "group", "scored", "n", "roc_auc", "roc_auc_low", "roc_auc_high"]
    columns += ["sensitivity", "specificity", "delta_roc_auc", "delta_sensitivity"]
    columns += ["delta_specificity"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            flat = {**r, "roc_auc_low": r["roc_auc_ci"][0], "roc_auc_high": r["roc_auc_ci"][1]}
            writer.writerow([_cell(flat[c]) for c in columns])


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def stress_figure(rows: list[dict[str, Any]], threshold: float, path: Path) -> Path:
    """ROC-AUC with its interval, and sensitivity/specificity at the threshold, per shift."""
    fig = Figure(figsize=(11, 0.32 * len(rows) + 1.6))
    ax_auc, ax_rate = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    auc = np.array([r["roc_auc"] for r in rows])
    low = np.array([r["roc_auc_ci"][0] for r in rows])
    high = np.array([r["roc_auc_ci"][1] for r in rows])
    has_ci = ~np.isnan(low)
    err = np.vstack([auc - low, high - auc])
    ax_auc.errorbar(auc[has_ci], y[has_ci], xerr=err[:, has_ci], fmt="o", color="C0", capsize=2)
    ax_auc.plot(auc[~has_ci], y[~has_ci], "o", color="C0")
    ax_auc.axvline(rows[0]["roc_auc"], color="grey", ls="--", lw=1, label="clean")
    ax_auc.set_xlabel("ROC-AUC (95% patient bootstrap)")
    ax_auc.legend(loc="lower left")
    for key, colour in (("sensitivity", "C3"), ("specificity", "C2")):
        ax_rate.plot([r[key] for r in rows], y, "o", color=colour, label=key)
        ax_rate.axvline(rows[0][key], color=colour, ls="--", lw=1)
    ax_rate.set_xlabel(f"at the stored threshold {threshold:.3g}")
    ax_rate.set_xlim(-0.02, 1.02)
    ax_rate.legend(loc="lower left")
    labels = [r["shift"] + ("" if r["scored"] else " (to refuse)") for r in rows]
    ax_auc.set_yticks(y, labels)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def shifts_gallery(names: list[str], views: np.ndarray, path: Path, columns: int = 6) -> Path:
    """One image under every view, as the model sees it (after the contract's resize)."""
    rows = -(-len(names) // columns)
    fig = Figure(figsize=(2 * columns, 2.2 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, name, view in zip(axes, names, views, strict=False):
        ax.imshow(view, cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path
