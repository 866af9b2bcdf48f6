"""`pneumonia subtype BUNDLE --out OUT`: a subtype head on a trained network's frozen features.

A one-output bundle gets a second output, P(viral | pneumonia), without retraining anything:
a logistic regression (standardised pooled features, L2, the two subtypes weighed the same)
is fitted on the training split's PNEUMONIA images whose names give the subtype, its
strength C chosen by cross-validation grouped by patient on those same training images, and
folded into the network's last layer as its second row. The first row, and so the screening
answer, its calibration, threshold and guard, stay exactly as they were.

Judged twice: on the validation split (the bundle's subtype record, as a trained head is), and
cross-fitted over the training and validation images together (five folds grouped by patient,
C chosen inside each fold's training part), so that every image with a subtype gets one
out-of-fold score and the interval rests on thousands of images instead of validation's few
hundred. The test split, where a manifest has one, is never read.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from pneumonia.core.bundle import INT8, ONNX, file_record, int8_state, read_meta, write_meta
from pneumonia.core.config import Config
from pneumonia.core.errors import DataError, PneumoniaError
from pneumonia.core.outputs import new_folder
from pneumonia.evaluation.subtype import subtype_record
from pneumonia.evaluation.uncertainty import bootstrap
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import to_probability
from pneumonia.modeling.classifier import safe_auc
from pneumonia.modeling.datamodule import XrayDataModule
from pneumonia.modeling.network import build_network, head_layers, save_bundle
from pneumonia.training.guard_fit import dataset_outputs

log = logging.getLogger(__name__)
STRENGTHS = (0.0001, 0.0003, 0.001, 0.003, 0.01)  # inverse L2 strengths C, chosen among by CV
FOLDS = 5


def probe(c: float = 0.001) -> Pipeline:
    """The head before folding: standardised features, balanced L2 logistic regression."""
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    return make_pipeline(StandardScaler(), lr)


def fit_probe(feats: np.ndarray, y: np.ndarray, groups: list[str], seed: int = 0) -> Pipeline:
    """The probe at the strength C that grouped cross-validation on these images prefers
    (ROC-AUC), refitted on all of them."""
    folds = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    grid = {"logisticregression__C": list(STRENGTHS)}
    search = GridSearchCV(probe(), grid, scoring="roc_auc", cv=folds)
    search.fit(feats, y, groups=groups)
    return search.best_estimator_


def out_of_fold(feats: np.ndarray, y: np.ndarray, groups: list[str], seed: int = 0) -> np.ndarray:
    """One P(viral) per image from a probe that never saw its patient (C chosen inside each
    fold's training part)."""
    scores = np.zeros(len(y))
    folds = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for fit, out in folds.split(feats, y, groups):
        fitted = fit_probe(feats[fit], y[fit], [groups[i] for i in fit], seed)
        scores[out] = fitted.predict_proba(feats[out])[:, 1]
    return scores


def folded_row(fitted: Pipeline) -> tuple[np.ndarray, float]:
    """(weights (D,), bias) of the probe as one linear layer on the raw features."""
    scaler, lr = fitted[0], fitted[-1]
    w = lr.coef_[0] / scaler.scale_
    return w, float(lr.intercept_[0] - np.dot(w, scaler.mean_))


def two_output_network(bundle: Bundle, w: np.ndarray, b: float) -> nn.Module:
    """The bundle's network with a second output row (`w`, `b`) in its classifier layer; every
    other weight, the first row included, copied unchanged."""
    source = load_bundle(bundle.path, "torch").model
    (layer,) = head_layers(source)
    prefix = next(name for name, module in source.named_modules() if module is layer)
    arch = bundle.meta.architecture.model_copy(update={"num_classes": 2})
    net = build_network(arch, bundle.contract)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    row = torch.from_numpy(w).to(state[f"{prefix}.weight"].dtype)[None]
    state[f"{prefix}.weight"] = torch.cat([state[f"{prefix}.weight"], row])
    state[f"{prefix}.bias"] = torch.cat([state[f"{prefix}.bias"], torch.tensor([b])])
    net.load_state_dict(state)
    return net.eval()


def _check_source(bundle: Bundle, out: Path) -> None:
    new_folder(out)
    if bundle.meta.architecture.members is not None:
        raise PneumoniaError(f"{bundle.path}: an ensemble; add the head to one network bundle")
    if bundle.meta.subtype is not None or bundle.meta.architecture.num_classes != 1:
        raise PneumoniaError(f"{bundle.path}: has a second output already")


def _features(model: Any, dm: XrayDataModule, split: str) -> dict[str, Any]:
    ds = dm.dataset(split)
    logits, feats = dataset_outputs(model, ds)
    patients = [r.patient for r in ds.rows]
    return {"y": np.asarray(ds.labels), "codes": np.asarray(ds.subtypes), "logits": logits,
            "feats": feats, "patients": patients}  # fmt: skip


def _reading(y: np.ndarray, p: np.ndarray, groups: list[str]) -> dict[str, Any]:
    ci = bootstrap(y, p, lambda a, s: {"roc_auc": safe_auc(a, s)}, groups, n_boot=1000)
    return {"n": len(y), "viral": int(y.sum()), "roc_auc": float(roc_auc_score(y, p)),
            "interval": [float(v) for v in ci["roc_auc"]]}  # fmt: skip


def add_subtype_head(
    source: Path,
    out: Path,
    manifest: Path | None = None,
    seed: int = 0,
    int8: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Write at `out` a copy of the bundle at `source` with the subtype head (see the module),
    its verified ONNX model, its guard carried over and, with `int8`, its int8 copy where it
    passes parity; returns the head's readings."""
    bundle = load_bundle(source, "onnx" if ONNX in read_meta(source)[1].files else "torch")
    _check_source(bundle, out)
    data = Config.model_validate(bundle.meta.training.get("config", {})).data
    data = data.model_copy(update={"manifest": manifest or data.manifest})
    if not Path(data.manifest).is_file():
        raise PneumoniaError(
            f"{data.manifest}: no such manifest; pass --data MANIFEST (made by `pneumonia data "
            "split`, cached by `data prepare` at the bundle's image size)"
        )
    dm = XrayDataModule(data, bundle.contract)
    dm.setup("fit")
    train, val = _features(bundle.model, dm, "train"), _features(bundle.model, dm, "val")
    known = train["codes"] >= 0
    counts = np.bincount(train["codes"][known], minlength=2)
    if counts.min() < FOLDS:
        raise DataError(
            f"{data.manifest}: the training split's file names give {counts[0]} bacterial and "
            f"{counts[1]} viral PNEUMONIA images; the head needs at least {FOLDS} of each"
        )
    if not (val["codes"] >= 0).any():
        raise DataError(f"{data.manifest}: no validation file name gives the subtype")
    groups = [p for p, k in zip(train["patients"], known, strict=True) if k]
    fitted = fit_probe(train["feats"][known], train["codes"][known], groups, seed)
    w, b = folded_row(fitted)
    net = two_output_network(bundle, w, b)
    readings = _readings(train, val, seed)
    meta = _meta(bundle, val, (w, b), fitted, readings, command)
    save_bundle(net, meta, out)
    _finish(bundle, out, (w, b), Path(data.manifest), int8)
    return {"bundle": str(out), "c": float(fitted[-1].C), "images": int(known.sum()),
            "viral": int(counts[1]), **readings}  # fmt: skip


def _readings(train: dict[str, Any], val: dict[str, Any], seed: int) -> dict[str, Any]:
    """Out of fold over training and validation together (see the module)."""
    keep = [part["codes"] >= 0 for part in (train, val)]
    feats = np.concatenate([part["feats"][k] for part, k in zip((train, val), keep, strict=True)])
    y = np.concatenate([part["codes"][k] for part, k in zip((train, val), keep, strict=True)])
    groups = [p for part, k in zip((train, val), keep, strict=True)
              for p, kept in zip(part["patients"], k, strict=True) if kept]  # fmt: skip
    scores = out_of_fold(feats, y, groups, seed)
    return {"out_of_fold": {**_reading(y, scores, groups), "folds": FOLDS}}


def _meta(
    bundle: Bundle,
    val: dict[str, Any],
    row: tuple[np.ndarray, float],
    fitted: Pipeline,
    readings: dict[str, Any],
    command: str,
) -> Any:
    """The source's metadata with the two-output architecture and the subtype record."""
    screen = to_probability(val["logits"], bundle.temperature)
    subtype_logits = val["feats"] @ row[0] + row[1]
    record = subtype_record(
        val["y"], val["codes"], screen, subtype_logits, bundle.threshold, val["patients"]
    )
    record.trained_on = (
        f"a logistic regression on the frozen pooled features (C = {fitted[-1].C:g}, chosen by "
        f"{FOLDS}-fold cross-validation grouped by patient) of the training split's PNEUMONIA "
        "images whose names give the subtype (bacteria, virus)"
    )
    record.validation["out_of_fold"] = readings["out_of_fold"]
    arch = bundle.meta.architecture.model_copy(update={"num_classes": 2})
    training = {**bundle.meta.training, "subtype_head": {"source": str(bundle.path),
                "command": command, "c": float(fitted[-1].C)}}  # fmt: skip
    return bundle.meta.model_copy(
        update={"architecture": arch, "subtype": record, "training": training}
    )


def graft_row(source: Path, target: Path, w: np.ndarray, b: float) -> None:
    """Write `target`: the ONNX model `source` with (`w`, `b`) as a second row of its last
    (float) Gemm, the one whose output is the logit; every other byte of the graph kept, so
    the screening path is the source's own (in an int8 model too, whose last layer is float)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    found = {init.name: init for init in graph.initializer}
    gemm = next((n for n in graph.node if n.op_type == "Gemm" and "logit" in n.output), None)
    if gemm is None or gemm.input[1] not in found or gemm.input[2] not in found:
        raise PneumoniaError(f"{source}: its logit is not a float Gemm with stored weights")
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    weight, bias = found[gemm.input[1]], found[gemm.input[2]]
    old_w, old_b = numpy_helper.to_array(weight), numpy_helper.to_array(bias)
    row = w.astype(old_w.dtype)
    new_w = np.vstack([old_w, row[None]]) if trans_b else np.hstack([old_w, row[:, None]])
    new_b = np.concatenate([old_b.reshape(-1), np.array([b], dtype=old_b.dtype)])
    weight.CopyFrom(numpy_helper.from_array(new_w, weight.name))
    bias.CopyFrom(numpy_helper.from_array(new_b, bias.name))
    logit = next(o for o in graph.output if o.name == "logit")
    logit.type.tensor_type.shape.dim[1].dim_value = 2
    onnx.save(model, str(target))


def _finish(source: Bundle, out: Path, row: tuple[np.ndarray, float], manifest: Path,
            int8: bool) -> None:  # fmt: skip
    """`model.onnx`: the source's with the head grafted (`graft_row`; a fresh export where
    the source has none), checked against the new PyTorch network; the source's guard and
    monitoring reference (the features are the same); then the int8 copy: the source's,
    grafted, where it has a passing one, else a fresh quantization; either kept only by the
    parity rule, and neither without `int8`."""
    from pneumonia.modeling.export import adopt_onnx
    from pneumonia.training.quantize import judge_int8, quantize_bundle
    from pneumonia.training.train import export_bundle

    if ONNX in source.meta.files:
        graft_row(source.path / ONNX, out / f"{ONNX}.tmp", *row)
        adopt_onnx(load_bundle(out, "torch"), out / f"{ONNX}.tmp")
    elif not export_bundle(out):
        return
    meta = read_meta(out)[1]
    if source.meta.guard is not None:
        name = source.meta.guard.file
        shutil.copyfile(source.path / name, out / name)
        files = {**meta.files, name: file_record(out / name)}
        meta = meta.model_copy(
            update={"guard": source.meta.guard, "reference": source.meta.reference, "files": files}
        )
        write_meta(meta, out)
    if int8 and int8_state(source.meta)[0]:
        try:
            graft_row(source.path / INT8, out / f"{INT8}.tmp", *row)
        except PneumoniaError as exc:
            log.warning("%s; quantizing the new model instead", exc)
        else:
            kept = source.meta.exports["int8"]
            how = {"method": kept.get("method"), "calibration": kept.get("calibration"),
                   "source": f"{source.path / INT8} with the subtype row grafted"}  # fmt: skip
            judge_int8(load_bundle(out, "onnx"), out / f"{INT8}.tmp", manifest, how)
            return
    if int8:
        try:
            quantize_bundle(load_bundle(out, "onnx"), manifest)
        except (PneumoniaError, OSError, ValueError) as exc:
            log.warning("%s: no int8 copy (%s); it runs on the float ONNX model", out, exc)
