"""`pneumonia ensemble`: build an ensemble bundle from member bundles.

The members' networks become one `EnsembleModel` (`pneumonia.modeling.ensemble`); the ensemble gets
its own calibration and threshold, fitted on validation like any bundle, and is written as a
bundle whose one weights file holds every member. Then, as a training run ends: its verified
`model.onnx`, and the out-of-distribution guard fitted on it, on the data and augmentation of
the member whose input contract the ensemble takes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core.bundle import WEIGHTS
from pneumonia.core.config import OperatingConfig
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.meta import (
    Architecture,
    BundleMeta,
    Calibration,
    Member,
    SubtypeRecord,
    Threshold,
)
from pneumonia.core.options import Scoring
from pneumonia.core.outputs import new_folder
from pneumonia.evaluation.evaluate import score_split, subtype_result
from pneumonia.evaluation.metrics import binary_metrics, validation_record
from pneumonia.evaluation.operating import fit_operating_point
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import to_probability
from pneumonia.modeling.ensemble import COMBINE, EnsembleModel
from pneumonia.modeling.network import save_bundle

log = logging.getLogger(__name__)


def _member_bundle(source: Path) -> Bundle:
    """A member from a bundle folder or a training run folder (its `bundle/`)."""
    folder = source / "bundle" if (source / "bundle" / "model.json").is_file() else source
    return load_bundle(folder)


def _check_members(bundles: list[Bundle]) -> None:
    if len(bundles) < 2:
        raise PneumoniaError("an ensemble needs at least two members")
    for b in bundles:
        if b.meta.architecture.members is not None:
            raise PneumoniaError(f"{b.path}: is an ensemble already; list its members instead")
        if b.meta.architecture.in_chans != 1:
            raise PneumoniaError(f"{b.path}: takes {b.meta.architecture.in_chans} channels, not 1")
    modes = {b.contract.resize for b in bundles}
    if len(modes) > 1:
        raise PneumoniaError(
            f"members resize differently ({', '.join(sorted(modes))}); an ensemble has one "
            "input contract, so its members must share preprocess.resize"
        )


def _default_data(bundles: list[Bundle]) -> str:
    digests = {b.meta.data.get("manifest_sha256") for b in bundles}
    manifests = [b.meta.data.get("manifest") for b in bundles]
    if len(digests) != 1 or None in digests or not manifests[0]:
        raise PneumoniaError(
            "the members were not trained on the same recorded manifest; pass --data "
            "MANIFEST_OR_FOLDER for the validation data to fit the ensemble's threshold on"
        )
    return str(manifests[0])


def ensemble_network(bundles: list[Bundle]) -> tuple[EnsembleModel, BundleMeta]:
    """The members' networks as one (each on its own contract, its calibrated logits
    averaged), and the ensemble's metadata before its operating point is fitted."""
    contract = max(bundles, key=lambda b: b.contract.image_size).contract
    members = [
        Member(
            name=b.meta.architecture.name,
            num_classes=b.meta.architecture.num_classes,
            preprocessing=b.contract,
            temperature=b.temperature,
            source=str(b.path),
            source_sha256=b.meta.files[WEIGHTS].sha256,
        )
        for b in bundles
    ]
    model = EnsembleModel(
        [b.model for b in bundles],
        [b.contract for b in bundles],
        [b.temperature for b in bundles],
        contract,
        subtype=all(m.num_classes == 2 for m in members),
    ).eval()
    outputs = 2 if model.subtype else 1
    arch = Architecture(name="ensemble", num_classes=outputs, members=members, combine=COMBINE)
    placeholder = Threshold(value=0.5, rule="unfitted")
    meta = BundleMeta(architecture=arch, preprocessing=contract, threshold=placeholder)
    meta.subtype = SubtypeRecord() if model.subtype else None
    return model, meta


def _operating_point(
    scored: Any,
    cfg: OperatingConfig | None,
    operating: tuple[Threshold, Calibration | None] | None,
) -> tuple[Threshold, Calibration | None, np.ndarray]:
    """(threshold, calibration, calibrated probabilities): fitted on `scored` by `cfg`, or
    `operating` fitted elsewhere, only applied."""
    if operating is None:
        threshold, calibration, probs = fit_operating_point(
            scored.labels, scored.logits, cfg or OperatingConfig()
        )
        threshold.detail["data"] = scored.source
        return threshold, calibration, probs
    threshold, calibration = operating
    probs = to_probability(scored.logits, calibration.temperature if calibration else 1.0)
    return threshold, calibration, probs


def build_ensemble(
    sources: list[Path],
    out: Path,
    data: str | Path | None = None,
    split: str = "val",
    cfg: OperatingConfig | None = None,
    workers: int | None = None,
    show: bool = True,
    command: str = "",
    onnx: bool = True,
    guard: bool = True,
    operating: tuple[Threshold, Calibration | None] | None = None,
) -> dict[str, Any]:
    """Combine member bundles (or run folders) into an ensemble bundle at `out`, with its own
    calibration and threshold fitted on `split` of `data` (default: the members' manifest);
    then its `model.onnx` (with `onnx`) and its guard (with `guard` too), as training does.
    `operating` (threshold, calibration) fitted elsewhere (`train --folds`: on out-of-fold
    predictions) is kept instead, and `split` only measured at it."""
    new_folder(out, "ensemble")
    if split == "test":
        raise PneumoniaError("the operating point is chosen on validation data, never on test")
    bundles = [_member_bundle(Path(s)) for s in sources]
    _check_members(bundles)
    data = data if data is not None else _default_data(bundles)
    model, meta = ensemble_network(bundles)
    scored = score_split(Bundle(out, meta, model), data, split, Scoring(workers, show))
    threshold, calibration, probs = _operating_point(scored, cfg, operating)
    metrics = binary_metrics(scored.labels, probs, threshold.value)
    validation = validation_record(metrics, split, scored.source)
    meta = meta.model_copy(
        update={
            "threshold": threshold,
            "calibration": calibration,
            "validation": validation,
            "data": dict(bundles[0].meta.data),
            "training": {"command": command, "ensemble_of": [str(b.path) for b in bundles]},
        }
    )
    if meta.subtype is not None:  # the members' mean subtype output, judged on the same split
        section = subtype_result(Bundle(out, meta, model), scored, probs, 1000) or {}
        meta.subtype.validation = {"split": split, "data": scored.source, **section}
    save_bundle(model, meta, out)
    log.info("ensemble of %d members: %s", len(bundles), out)
    source = next(b for b in bundles if b.contract == meta.preprocessing)
    return {
        "bundle": str(out),
        "members": [str(b.path) for b in bundles],
        "validation": validation,
        "threshold": threshold.value,
        **_export_and_guard(out, source, Path(data), onnx, guard),
    }


def _export_and_guard(
    out: Path, source: Bundle, data: Path, onnx: bool, guard: bool
) -> dict[str, Any]:
    """The ensemble's verified `model.onnx` (with `onnx`), then (with `guard`) its
    out-of-distribution guard fitted on it (or on PyTorch) with the data settings `source` (a
    member) was trained with: `data` when it is a manifest, else that member's recorded one.
    A failure is logged with the command that does it later; the bundle is kept."""
    from pneumonia.core.config import Config
    from pneumonia.evaluation.evaluate import is_manifest
    from pneumonia.modeling.datamodule import XrayDataModule
    from pneumonia.training.guard_fit import add_guard
    from pneumonia.training.train import export_bundle

    onnx = onnx and export_bundle(out)
    if not guard:
        return {"onnx": onnx, "guard": None}
    cfg = Config.model_validate(source.meta.training.get("config", {}))
    manifest = data if data.is_file() and is_manifest(data) else cfg.data.manifest
    try:
        bundle = load_bundle(out, "onnx" if onnx else "torch")
        dm = XrayDataModule(cfg.data.model_copy(update={"manifest": manifest}), bundle.contract)
        dm.setup("fit")
        record = add_guard(bundle, dm, cfg.guard, cfg.train.seed)
    except (PneumoniaError, OSError, ValueError) as exc:
        log.warning(
            "%s: no out-of-distribution guard (%s); fit it with `pneumonia guard %s --data "
            "MANIFEST` (the members' manifest, cached by `pneumonia data prepare`)",
            out, exc, out,
        )  # fmt: skip
        return {"onnx": onnx, "guard": None}
    return {"onnx": onnx, "guard": record.model_dump()}
