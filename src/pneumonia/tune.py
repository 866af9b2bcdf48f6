"""`pneumonia threshold`: re-tune an existing bundle's calibration and threshold on validation.

The weights are untouched (their hash still verifies); only `model.json` and the model card
change. The new threshold records the data it was chosen on and the one it replaced.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia import LABELS
from pneumonia.bundle import CARD, META, Bundle, BundleMeta, write_meta
from pneumonia.config import OperatingConfig
from pneumonia.errors import DataError, PneumoniaError
from pneumonia.evaluate import score_split, select_items
from pneumonia.inference import to_probability
from pneumonia.metrics import binary_metrics, headline, jsonable
from pneumonia.operating import fit_operating_point


def _check_target(out: Path | None, in_place: bool) -> None:
    if in_place == (out is not None):
        raise PneumoniaError("say where the re-tuned bundle goes: --out NEW_FOLDER or --in-place")
    if out is not None and out.exists():
        raise PneumoniaError(f"{out}: already exists; choose a new folder for the bundle")


def _target(bundle: Bundle, out: Path | None) -> Path:
    if out is None:
        return bundle.path
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
    workers: int | None,
    show: bool,
) -> tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(source, labels, clean logits, shifted logits by view) of `split` of `data`."""
    from pneumonia.stress import split_views, view_logits

    items, source = select_items(data, split)
    views = view_logits(
        bundle.model, bundle.contract, [it.path for it in items], names, 0, workers, show
    )
    return source, *split_views(views, [LABELS.index(it.label) for it in items])


def retune(
    bundle: Bundle,
    data: str | Path,
    split: str,
    cfg: OperatingConfig,
    out: Path | None = None,
    in_place: bool = False,
    workers: int | None = None,
    show: bool = True,
    tta: bool = False,
) -> dict[str, Any]:
    """Fit calibration and threshold on `split` of `data`; write the bundle; return a summary.

    With `tta`, on test-time-augmented scores: then use `--tta` wherever the bundle is applied.
    """
    if split == "test":
        raise DataError("the operating point is chosen on validation data, never on test")
    _check_target(out, in_place)
    if cfg.views:
        if tta:
            raise PneumoniaError("choose --view or --tta, not both (views are scored without TTA)")
        source, labels, raw, shifted = _views(bundle, data, split, cfg.views, workers, show)
    else:
        scored = score_split(bundle, data, split, workers, show, tta)
        source, labels, raw, shifted = scored.source, scored.labels, scored.logits, None
    threshold, calibration, probs = fit_operating_point(labels, raw, cfg, shifted)
    previous = bundle.meta.threshold.model_dump()
    threshold.detail.update({"data": source, "tta": tta, "previous": previous})
    metrics = binary_metrics(labels, probs, threshold.value)
    validation = {"split": split, "data": source, **jsonable(headline(metrics))}
    validation.update({k: metrics[k] for k in ("n", "positives", "threshold")})
    validation["confusion_matrix"] = metrics["confusion_matrix"]
    output = BundleMeta.model_fields["output"].default
    reference = dict(bundle.meta.reference)
    if reference:  # what `monitor` compares answers with: now at the new calibration
        temperature = calibration.temperature if calibration else 1.0
        reference["probability"] = [round(float(p), 6) for p in to_probability(raw, temperature)]
        reference["split"] = source
    meta = bundle.meta.model_copy(
        update={
            "threshold": threshold,
            "calibration": calibration,
            "validation": validation,
            "output": output,
            "reference": reference,
        }
    )
    folder = _target(bundle, out)
    write_meta(meta, folder)
    return {
        "bundle": str(folder),
        "operating_point": threshold,
        "calibration": calibration,
        "validation": validation,
    }
