"""`pneumonia threshold`: re-tune an existing bundle's calibration and threshold on validation.

The weights are untouched (their hash still verifies); only `model.json` and the model card
change. The new threshold records the data it was chosen on and the one it replaced.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core import LABELS
from pneumonia.core.bundle import CARD, META, write_meta
from pneumonia.core.config import OperatingConfig
from pneumonia.core.errors import DataError, PneumoniaError
from pneumonia.core.meta import BundleMeta, Calibration, Threshold
from pneumonia.core.options import Scoring
from pneumonia.core.outputs import new_folder
from pneumonia.data.shifts import check_views
from pneumonia.evaluation.evaluate import Item, score_split, select_items
from pneumonia.evaluation.metrics import binary_metrics, validation_record
from pneumonia.evaluation.operating import fit_operating_point
from pneumonia.inference.loading import Bundle
from pneumonia.inference.predictions import to_probability


def _check_target(out: Path | None, in_place: bool) -> None:
    if in_place == (out is not None):
        raise PneumoniaError("say where the re-tuned bundle goes: --out NEW_FOLDER or --in-place")
    if out is not None:
        new_folder(out)


def copy_bundle(bundle: Bundle, out: Path) -> Path:
    """A copy of the bundle's files (weights, exports, guard, metadata) in a new folder."""
    out.mkdir(parents=True)
    for name in (*bundle.meta.files, META, CARD):
        if (bundle.path / name).is_file():
            shutil.copy2(bundle.path / name, out / name)
    return out


def _views(
    bundle: Bundle,
    data: str | Path,
    split: str,
    names: list[str],
    scoring: Scoring,
) -> tuple[str, list[Item], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(source, readable items, labels, clean logits, shifted logits by view) of `split`."""
    from pneumonia.evaluation.stress import split_views, view_logits

    items, source = select_items(data, split)
    views = view_logits(
        bundle.model,
        bundle.contract,
        [it.path for it in items],
        names,
        0,
        scoring.workers,
        scoring.show,
    )
    kept = [items[i] for i in views.readable]
    return source, kept, *split_views(views, [LABELS.index(it.label) for it in items])


def _audited(items: list[Item], audit: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """(mask of the items the audit did not flag, what model.json records of the rest)."""
    from pneumonia.data.split import Row, content_hash
    from pneumonia.evaluation.audit import left_out_record, read_issues, unflagged

    rows = []
    for it in items:
        digest = content_hash(it.path)
        if not isinstance(digest, str):
            raise DataError(f"{it.path}: {digest.message}")
        rows.append(Row(it.path, it.label, it.patient, "val", digest))
    flagged = read_issues(audit, rows)
    kept = unflagged(((r.sha256, r.label) for r in rows), flagged)
    return kept, left_out_record(audit, flagged, {"val": rows}, ["operating"])


def _scores(
    bundle: Bundle, data: str | Path, split: str, views: list[str], scoring: Scoring
) -> tuple[str, list[Item], np.ndarray, np.ndarray, dict[str, np.ndarray] | None]:
    """(source, readable items, labels, clean logits, shifted logits by view or None)."""
    if not views:
        scored = score_split(bundle, data, split, scoring)
        return scored.source, scored.items, scored.labels, scored.logits, None
    if scoring.tta:
        raise PneumoniaError("choose --view or --tta, not both (views are scored without TTA)")
    return _views(bundle, data, split, views, scoring)


def _refitted(
    meta: BundleMeta,
    fitted: tuple[Threshold, Calibration | None, dict[str, Any]],
    answers: tuple[np.ndarray, np.ndarray],
    source: str,
    left_out: dict[str, Any],
) -> BundleMeta:
    """`meta` with the new threshold, calibration and validation record, the monitoring
    reference's answers (`answers`: probabilities at the new calibration, labels), and the
    audit's record of this fit."""
    threshold, calibration, validation = fitted
    probs, labels = answers
    reference = dict(meta.reference)
    if reference:  # what `monitor` and the site curve compare with: at the new calibration
        reference["probability"] = [round(float(p), 6) for p in probs]
        reference["label"] = [int(y) for y in labels]
        reference["split"] = source
    data_record = dict(meta.data)  # the training record stays; the fit's is replaced
    earlier = data_record.pop("left_out", {})
    record = {k: v for k, v in earlier.items() if k == "training"} | left_out
    if record:
        data_record["left_out"] = record
    # the borderline band was measured on the answers before this calibration: dropped
    # (`pneumonia pairs --record` measures it again)
    update = {"threshold": threshold, "calibration": calibration, "validation": validation,
              "output": BundleMeta.model_fields["output"].default, "reference": reference,
              "data": data_record, "borderline": None}  # fmt: skip
    return meta.model_copy(update=update)


def retune(
    bundle: Bundle,
    data: str | Path,
    split: str,
    cfg: OperatingConfig,
    out: Path | None = None,
    in_place: bool = False,
    scoring: Scoring | None = None,
    audit: Path | None = None,
) -> dict[str, Any]:
    """Fit calibration and threshold on `split` of `data` (without the images a label audit
    flags, when `audit` names its CSV); write the bundle; return a summary.

    With `scoring.tta`, on test-time-augmented scores: then use `--tta` wherever the bundle is
    applied.
    """
    if split == "test":
        raise DataError("the operating point is chosen on validation data, never on test")
    scoring = scoring or Scoring()
    tta = scoring.tta
    check_views(cfg.views)
    _check_target(out, in_place)
    source, items, labels, raw, shifted = _scores(bundle, data, split, cfg.views, scoring)
    kept = np.ones(len(labels), dtype=bool)
    left_out: dict[str, Any] = {}
    if audit is not None:
        kept, left_out = _audited(items, audit)
        if shifted is not None:
            shifted = {name: z[kept] for name, z in shifted.items()}
    threshold, calibration, _ = fit_operating_point(labels[kept], raw[kept], cfg, shifted)
    previous = bundle.meta.threshold.model_dump()
    threshold.detail.update({"data": source, "tta": tta, "previous": previous})
    if not kept.all():
        threshold.detail["left_out"] = int((~kept).sum())
    temperature = calibration.temperature if calibration else 1.0
    probs = to_probability(raw, temperature)
    metrics = binary_metrics(labels, probs, threshold.value)  # every validation image
    validation = validation_record(metrics, split, source)
    fitted = (threshold, calibration, validation)
    meta = _refitted(bundle.meta, fitted, (probs, labels), source, left_out)
    folder = bundle.path if out is None else copy_bundle(bundle, out)
    write_meta(meta, folder)
    return {
        "bundle": str(folder),
        "operating_point": threshold,
        "calibration": calibration,
        "validation": validation,
    }
