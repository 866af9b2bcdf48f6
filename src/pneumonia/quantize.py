"""`pneumonia export BUNDLE --int8 --data MANIFEST`: an int8 copy of `model.onnx`, kept only
if it answers like the float model.

ONNX Runtime's static quantization (QDQ format, int8 weights per channel, uint8 activations)
is calibrated on training images of the manifest (never validation), then judged on the
validation split against the float ONNX model by a parity rule: ROC-AUC within 0.002 and at
least 99.5% of images given the same label at the bundle's threshold. `model.json` records the
attempt and its numbers either way (`exports.int8`); the file `model.int8.onnx` is written,
hashed and used by `--backend auto` only when the rule passes.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.bundle import INT8, Bundle, file_record, write_meta
from pneumonia.errors import DataError, PneumoniaError
from pneumonia.evaluate import score_split
from pneumonia.inference import load_squares, to_probability
from pneumonia.metrics import binary_metrics
from pneumonia.preprocess import to_array
from pneumonia.runtime import OnnxModel
from pneumonia.split import read_manifest

log = logging.getLogger(__name__)
AUC_LIMIT = 0.002
SAME_LABELS = 0.995


def calibration_batches(
    bundle: Bundle, manifest: Path, count: int, seed: int, workers: int | None
) -> list[np.ndarray]:
    """`count` training images of the manifest (seeded draw), as contract arrays of one."""
    rows = [r for r in read_manifest(manifest) if r.split == "train"]
    if not rows:
        raise DataError(f"{manifest}: no 'train' images to calibrate the quantization on")
    pick = np.random.default_rng(seed).choice(len(rows), min(count, len(rows)), replace=False)
    loaded = load_squares([rows[i].path for i in sorted(pick)], bundle.contract, workers, False)
    squares = [sq for sq in loaded if not isinstance(sq, str)]
    return [to_array(sq[None], bundle.contract) for sq in squares]


def _quantize(source: Path, target: Path, batches: list[np.ndarray]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.batches, None)
            return None if x is None else {"image": x}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def parity(
    labels: np.ndarray, float_logits: np.ndarray, int8_logits: np.ndarray, bundle: Bundle
) -> dict[str, Any]:
    """The parity rule's numbers for int8 against float logits of the same images."""
    t, threshold = bundle.temperature, bundle.threshold
    p_float, p_int8 = to_probability(float_logits, t), to_probability(int8_logits, t)
    auc_float = binary_metrics(labels, p_float, threshold)["roc_auc"]
    auc_int8 = binary_metrics(labels, p_int8, threshold)["roc_auc"]
    same = float(np.mean((p_float >= threshold) == (p_int8 >= threshold)))
    return {
        "roc_auc_float": auc_float,
        "roc_auc_int8": auc_int8,
        "same_labels": same,
        "max_abs_diff_probability": float(np.abs(p_float - p_int8).max()),
        "rule": f"|ROC-AUC change| <= {AUC_LIMIT} and same labels >= {SAME_LABELS}",
        "passed": bool(abs(auc_int8 - auc_float) <= AUC_LIMIT and same >= SAME_LABELS),
    }


def quantize_bundle(
    bundle: Bundle,
    manifest: Path,
    split: str = "val",
    images: int = 256,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Calibrate, write, judge against the float model `bundle` runs (loaded with backend
    onnx); keep `model.int8.onnx` only when the parity rule passes."""
    if split == "test":
        raise PneumoniaError("the parity check runs on validation data, never on 'test'")
    if bundle.backend != "onnx":
        raise PneumoniaError(f"{bundle.path}: load it on the float ONNX model (backend onnx)")
    target = bundle.path / INT8
    if (target.exists() or "int8" in bundle.meta.exports) and not force:
        raise PneumoniaError(f"{bundle.path}: already has an int8 attempt; pass --force")
    batches = calibration_batches(bundle, manifest, images, seed, workers)
    tmp = target.with_suffix(".onnx.tmp")
    _quantize(bundle.model.path, tmp, batches)  # the verified model.onnx the bundle runs
    scored = score_split(bundle, manifest, split, workers, show=False)
    int8_bundle = Bundle(bundle.path, bundle.meta, OnnxModel(tmp), "onnx")
    int8_logits = score_split(int8_bundle, manifest, split, workers, show=False).logits
    result = parity(scored.labels, scored.logits, int8_logits, bundle)
    result |= {
        "file": INT8,
        "method": "onnxruntime quantize_static, QDQ, int8 weights per channel, uint8 activations",
        "calibration": f"{len(batches)} images of split 'train' of {manifest} (seed {seed})",
        "judged_on": f"{len(scored.items)} images of split {split!r} of {manifest}",
    }
    files = {k: v for k, v in bundle.meta.files.items() if k != INT8}
    if result["passed"]:
        tmp.replace(target)
        files[INT8] = file_record(target)
    else:
        tmp.unlink()
        target.unlink(missing_ok=True)
        log.warning("int8 model not kept: it fails the parity rule (%s)", result["rule"])
    meta = bundle.meta.model_copy(
        update={"files": files, "exports": {**bundle.meta.exports, "int8": result}}
    )
    write_meta(meta, bundle.path)
    return result
