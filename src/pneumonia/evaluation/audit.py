"""`pneumonia data audit`: likely label errors, found by confident learning.

Every image of the manifest (training and validation) gets an out-of-sample P(class) from a
cheap model: a logistic regression on the pooled features of a frozen, ImageNet-pretrained
network (no weight of it ever saw these labels), cross-fitted over K folds with each
patient's images in one fold. `cleanlab.filter.find_label_issues` (Northcutt, Jiang and
Chuang, 2021) then flags the images whose given label the model contradicts beyond what the
estimated noise rates allow, ranked by self-confidence (the out-of-sample probability of the
given label; lowest first).

Writes `label_issues.csv` (every image: rank, flag, self-confidence, suggested label),
`audit.json` (method, counts per split and class, out-of-fold ROC-AUC) and `index.html` (a
gallery of the flagged images, thumbnails made now from the files, nothing stored). Training
reads the CSV back (`audit.file`) to leave the flagged images out of the operating-point fit
and/or of training (`audit.leave_out`).
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core import LABELS
from pneumonia.core.errors import DataError, PneumoniaError
from pneumonia.core.preprocess import Preprocessing
from pneumonia.data.split import Row

log = logging.getLogger(__name__)
COLUMNS = ("rank", "path", "sha256", "split", "patient", "label", "issue", "self_confidence",
           "p_pneumonia", "suggested")  # fmt: skip
MIN_PER_CLASS = 10  # fewer images of a class than this: no audit


@dataclass(frozen=True)
class AuditSettings:
    """How the out-of-sample probabilities are made."""

    backbone: str = "efficientnet_lite0"
    folds: int = 5
    regularisation: float = 0.01  # C of the logistic regression, on standardised features
    seed: int = 0


def backbone_features(
    rows: list[Row],
    cache_dir: Path,
    contract: Preprocessing,
    backbone: str,
    batch: int = 64,
    show: bool = True,
) -> np.ndarray:
    """Pooled features of the frozen ImageNet-pretrained `backbone` for every row's cached
    square (`pneumonia data prepare`), (N, D) float32."""
    import torch

    from pneumonia.core.preprocess import to_array
    from pneumonia.core.progress import track
    from pneumonia.data.cache import cached_array_path
    from pneumonia.modeling.allocator import keep_freed_memory
    from pneumonia.modeling.models import create_model

    missing = [r.path for r in rows if not cached_array_path(cache_dir, r.sha256).is_file()]
    if missing:
        raise DataError(
            f"{cache_dir}: {len(missing)} images are not cached (first: {missing[0]}); run "
            "`pneumonia data prepare` with the same settings first"
        )
    keep_freed_memory()  # no page faults for every activation (pneumonia.modeling.allocator)
    model = create_model(backbone, pretrained=True).eval().to(memory_format=torch.channels_last)
    starts = range(0, len(rows), batch)
    out = []
    with torch.inference_mode():
        for start in track(starts, len(starts), "features", show):
            chunk = rows[start : start + batch]
            squares = np.stack([np.load(cached_array_path(cache_dir, r.sha256)) for r in chunk])
            x = torch.from_numpy(to_array(squares, contract))
            x = x.contiguous(memory_format=torch.channels_last)
            pooled = model.forward_head(model.forward_features(x), pre_logits=True)  # type: ignore[operator]
            out.append(pooled.float().numpy())
    return np.concatenate(out)


def out_of_fold(
    features: np.ndarray, labels: np.ndarray, groups: list[str], settings: AuditSettings
) -> tuple[np.ndarray, np.ndarray]:
    """(N x 2 out-of-fold class probabilities, fold of each image): a standardised logistic
    regression fitted K times, each time without one fold of patients."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(labels, minlength=len(LABELS))
    if counts.min() < max(MIN_PER_CLASS, settings.folds):
        raise DataError(
            f"an audit needs at least {max(MIN_PER_CLASS, settings.folds)} images of each class; "
            f"found {dict(zip(LABELS, counts.tolist(), strict=True))}"
        )
    splitter = StratifiedGroupKFold(settings.folds, shuffle=True, random_state=settings.seed)
    probs = np.zeros((len(labels), len(LABELS)))
    fold = np.zeros(len(labels), dtype=int)
    for k, (fit, held) in enumerate(splitter.split(features, labels, groups)):
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=settings.regularisation, max_iter=5000)
        )
        model.fit(features[fit], labels[fit])
        probs[held] = model.predict_proba(features[held])
        fold[held] = k
    return probs, fold


def label_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flagged mask, self-confidence) by cleanlab's `find_label_issues` (confident joint,
    pruned by the estimated noise rates)."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:  # pragma: no cover - a dependency of the train extra
        raise PneumoniaError(
            "the label audit needs cleanlab: pip install 'pneumonia[train]'"
        ) from None
    flagged = np.asarray(find_label_issues(labels, probs), dtype=bool)
    return flagged, probs[np.arange(len(labels)), labels]


def audit_rows(
    rows: list[Row], features: np.ndarray, settings: AuditSettings
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one record per image, most suspicious first; summary) for rows and their features."""
    from sklearn.metrics import roc_auc_score

    labels = np.array([LABELS.index(r.label) for r in rows])
    probs, _ = out_of_fold(features, labels, [r.patient for r in rows], settings)
    flagged, confidence = label_issues(labels, probs)
    order = np.lexsort((np.arange(len(rows)), confidence))
    records = []
    for rank, i in enumerate(order, start=1):
        r = rows[i]
        records.append(
            {
                "rank": rank,
                "path": r.path,
                "sha256": r.sha256,
                "split": r.split,
                "patient": r.patient,
                "label": r.label,
                "issue": bool(flagged[i]),
                "self_confidence": round(float(confidence[i]), 6),
                "p_pneumonia": round(float(probs[i, 1]), 6),
                "suggested": LABELS[int(np.argmax(probs[i]))],
            }
        )
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for rec in records:
        cell = counts.setdefault(rec["split"], {}).setdefault(
            rec["label"], {"images": 0, "issues": 0}
        )
        cell["images"] += 1
        cell["issues"] += int(rec["issue"])
    summary = {
        "images": len(rows),
        "issues": int(flagged.sum()),
        "counts": counts,
        "out_of_fold_roc_auc": round(float(roc_auc_score(labels, probs[:, 1])), 4),
        "method": method_text(settings),
        "settings": settings.__dict__,
    }
    return records, summary


def method_text(settings: AuditSettings) -> str:
    """One sentence that says how the audit decided."""
    return (
        f"cleanlab find_label_issues (confident learning) on {settings.folds}-fold out-of-fold "
        f"probabilities of a logistic regression (C={settings.regularisation}) on frozen "
        f"ImageNet {settings.backbone} features, folds grouped by patient"
    )


def write_audit(records: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> Path:
    """`label_issues.csv`, `audit.json` and `index.html` in `out` (made); the CSV's path."""
    out.mkdir(parents=True, exist_ok=True)
    table = out / "label_issues.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    summary = {**summary, "file": table.name, "sha256": file_sha256(table)}
    (out / "audit.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "index.html").write_text(gallery_html(records, summary), encoding="utf-8")
    return table


def gallery_html(records: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """A self-contained page: the counts, then every flagged image with its numbers."""
    from pneumonia.evaluation.report import thumbnail_uri

    rows = "".join(
        f"<tr><td>{split}</td><td>{label}</td><td>{c['images']}</td><td>{c['issues']}</td></tr>"
        for split, by_label in sorted(summary["counts"].items())
        for label, c in sorted(by_label.items())
    )
    cards = []
    for rec in (r for r in records if r["issue"]):
        src = thumbnail_uri(rec["path"], 200)
        img = f'<img src="{src}" alt="">' if src else "<p>(unreadable now)</p>"
        cards.append(
            f"<figure>{img}<figcaption>#{rec['rank']} {html.escape(Path(rec['path']).name)}<br>"
            f"{rec['split']}: labelled <b>{rec['label']}</b>, P(PNEUMONIA) "
            f"{rec['p_pneumonia']:.3f}</figcaption></figure>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pneumonia label audit</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #dde3ea;padding:.25rem .6rem}}
.grid{{display:flex;flex-wrap:wrap;gap:.8rem}}figure{{margin:0;width:200px;font-size:.8rem}}
img{{width:200px}}</style></head><body>
<h1>Label audit: {summary["issues"]} likely label errors of {summary["images"]} images</h1>
<p>{html.escape(summary["method"])}. Out-of-fold ROC-AUC {summary["out_of_fold_roc_auc"]}.
A flag is a reason to look, not a verdict: read each film before you relabel it.</p>
<table><tr><th>split</th><th>label</th><th>images</th><th>flagged</th></tr>{rows}</table>
<h2>Flagged images, most suspicious first</h2><div class="grid">{"".join(cards)}</div>
</body></html>
"""


def file_sha256(path: Path) -> str:
    """sha256 of a file (the audit CSV a bundle was fitted with)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def require_audit(path: Path) -> None:
    """Refuse, saying what to do, when the audit file a config names is not there."""
    if not path.is_file():
        raise PneumoniaError(
            f"{path}: no label audit here; run `pneumonia data audit` first, or set "
            "audit.file=null to use every label"
        )


def unflagged(keys: Iterable[tuple[str, str]], flagged: Collection[tuple[str, str]]) -> np.ndarray:
    """Boolean mask: True for each (sha256, label) the audit did not flag, the images a
    threshold or calibration is fitted on."""
    return np.array([key not in flagged for key in keys], dtype=bool)


def read_issues(path: Path, rows: list[Row]) -> dict[tuple[str, str], dict[str, Any]]:
    """The flagged images of an audit CSV that are among `rows`, by (sha256, label); refused
    when the audit was made from other data (it does not list an image of `rows`)."""
    require_audit(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not set(COLUMNS) <= set(reader.fieldnames):
            raise PneumoniaError(f"{path}: not a label audit (columns {', '.join(COLUMNS)})")
        listed = {(rec["sha256"], rec["label"]): rec for rec in reader}
    unknown = [r.path for r in rows if (r.sha256, r.label) not in listed]
    if unknown:
        raise PneumoniaError(
            f"{path}: made from other data ({len(unknown)} images not in it, first {unknown[0]}); "
            "run `pneumonia data audit` again on this manifest"
        )
    wanted = {(r.sha256, r.label) for r in rows}
    return {key: rec for key, rec in listed.items() if key in wanted and rec["issue"] == "True"}


def run_audit(
    manifest: Path,
    cache_root: Path,
    contract: Preprocessing,
    out: Path,
    settings: AuditSettings | None = None,
    show: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Audit every image of `manifest` (train and val) from its prepared cache; write the
    outputs into `out`. Returns (the CSV's path, the summary)."""
    from pneumonia.data.cache import cache_dir_for, read_failed
    from pneumonia.data.split import read_manifest

    settings = settings or AuditSettings()
    cache_dir = cache_dir_for(cache_root, contract)
    failed = read_failed(cache_dir)
    every = [r for r in read_manifest(manifest) if r.split in ("train", "val")]
    rows = [r for r in every if r.path not in failed]
    for path in sorted(set(r.path for r in every) - set(r.path for r in rows)):
        log.warning("%s: %s (not audited)", path, failed[path])
    if not rows:
        raise DataError(f"{manifest}: no training or validation images to audit")
    features = backbone_features(rows, cache_dir, contract, settings.backbone, show=show)
    records, summary = audit_rows(rows, features, settings)
    summary["manifest"] = str(manifest)
    return write_audit(records, summary, out), summary


def left_out_record(
    path: Path,
    flagged: dict[tuple[str, str], dict[str, Any]],
    rows: dict[str, list[Row]],
    where: Sequence[str],
) -> dict[str, Any]:
    """What `model.json` says of the images an audit left out, for each fit in `where`
    (`operating`: the validation images of the calibration and threshold fit; `training`: the
    training images): the audit file and its hash, how it decided, how many and which."""
    summary_file = path.parent / "audit.json"
    method = json.loads(summary_file.read_text())["method"] if summary_file.is_file() else ""
    source = {
        "file": str(path),
        "sha256": file_sha256(path),
        "why": "likely label errors: " + (method or "pneumonia data audit"),
    }
    record: dict[str, Any] = {}
    for fit, split in (("operating", "val"), ("training", "train")):
        if fit not in where:
            continue
        chosen = [r for r in rows[split] if (r.sha256, r.label) in flagged]
        record[fit] = {
            **source,
            "split": split,
            "images": len(chosen),
            "of": len(rows[split]),
            "by_label": {lab: sum(r.label == lab for r in chosen) for lab in LABELS},
            "paths": [r.path for r in chosen],
        }
    return record
