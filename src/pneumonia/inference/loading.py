"""Loading a bundle: its files verified, then its network on the chosen backend and its guard.

`load_bundle` is how every command gets a model: the verified `model.onnx` on ONNX Runtime,
or its int8 copy where that copy passed its parity rule, or PyTorch (the registry network, or
an ensemble of them, built by `pneumonia.modeling.network`, which is loaded by name only then);
the out-of-distribution guard is loaded beside it when the bundle has one and it was judged on
that model. `Bundle` is what a loaded bundle is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pneumonia.core import LABELS
from pneumonia.core.bundle import (
    INT8,
    META,
    ONNX,
    TRAIN_EXTRA,
    WEIGHTS,
    int8_state,
    read_meta,
    verify_file,
)
from pneumonia.core.errors import BundleError
from pneumonia.core.meta import BundleMeta
from pneumonia.core.preprocess import Preprocessing
from pneumonia.inference.guard import GUARD, Guard, load_guard
from pneumonia.inference.runtime import BACKENDS, OnnxModel, torch_available, torch_side

log = logging.getLogger(__name__)


@dataclass
class Bundle:
    """A loaded bundle: its metadata and the network on CPU, a PyTorch module in eval mode
    (`backend` torch) or an ONNX Runtime session (`backend` onnx, or int8 for the quantized
    copy)."""

    path: Path
    meta: BundleMeta
    model: Any
    backend: str = "torch"
    guard: Guard | None = None

    @property
    def threshold(self) -> float:
        return self.meta.threshold.value

    @property
    def contract(self) -> Preprocessing:
        return self.meta.preprocessing

    @property
    def temperature(self) -> float:
        return self.meta.calibration.temperature if self.meta.calibration else 1.0


def choose_backend(folder: Path, meta: BundleMeta, backend: str) -> str:
    """`torch`, `onnx` or `int8` for `backend` (auto: the int8 model when it passed its parity
    rule, with the guard when the bundle has one, else the float ONNX model, else PyTorch);
    refused, naming the fix, when the choice cannot run here."""
    if backend not in BACKENDS:
        raise BundleError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    has_onnx = ONNX in meta.files and "onnx" in meta.exports
    has_int8, int8_guarded = int8_state(meta)
    if backend == "auto":  # a guard not judged on the int8 model would be switched off
        with_guard = meta.guard is None or int8_guarded
        backend = "int8" if has_int8 and with_guard else "onnx" if has_onnx else "torch"
    if backend == "onnx" and not has_onnx:
        raise BundleError(
            f"{folder}: has no ONNX model; run `pneumonia export {folder} --onnx` first"
        )
    if backend == "int8" and not has_int8:
        raise BundleError(
            f"{folder}: has no int8 model that passed its parity check against its model.onnx; "
            f"run `pneumonia export {folder} --int8 --data MANIFEST --force` (model.json "
            "records the last attempt)"
        )
    if backend == "torch" and not torch_available():
        raise BundleError(
            f"{folder}: needs PyTorch, which this inference-only install lacks"
            + ("" if has_onnx else " (and the bundle has no model.onnx)")
            + f"; {TRAIN_EXTRA}"
            + (", or use --backend onnx" if has_onnx else "")
        )
    return backend


def _weights_record(weights: Path) -> str | None:
    """The contract record a weights file carries in its safetensors header."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="numpy") as fh:
            return (fh.metadata() or {}).get("pneumonia")
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{weights}: cannot read weights ({exc})") from None


def load_bundle(
    path: str | Path | None = None, backend: str = "torch", threads: int | None = None
) -> Bundle:
    """Verify and load a bundle folder: the network on CPU through `backend` (torch: the
    PyTorch module in eval mode; onnx: its verified `model.onnx` on ONNX Runtime with
    `threads` threads; int8: its verified `model.int8.onnx`; auto: the first of int8, onnx
    and torch the bundle has)."""
    folder, meta = read_meta(path)
    weights = verify_file(folder, meta, WEIGHTS)
    if _weights_record(weights) != meta.contract_record():
        raise BundleError(
            f"{folder / META}: architecture, labels or preprocessing were edited and no longer "
            f"match the weights; restore the original {META}"
        )
    if tuple(meta.labels) != LABELS:
        raise BundleError(f"{folder}: label order {meta.labels} is not {list(LABELS)}")
    if (meta.subtype is not None) != (meta.architecture.num_classes == 2):
        raise BundleError(
            f"{folder / META}: a subtype record needs a network of 2 outputs (this one has "
            f"{meta.architecture.num_classes}); restore the original {META}"
        )
    chosen = choose_backend(folder, meta, backend)
    model: Any
    if chosen in ("onnx", "int8"):
        name = ONNX if chosen == "onnx" else INT8
        model = OnnxModel(verify_file(folder, meta, name), threads)
        log.debug("%s: ONNX Runtime (%s)", folder, name)
    else:
        model = torch_side().load_network(folder, meta, weights)
    return Bundle(folder, meta, model, chosen, _guard(folder, meta, model))


def _guard(folder: Path, meta: BundleMeta, model: Any) -> Guard | None:
    """The bundle's verified guard; None (with a warning saying why) when it cannot run."""
    if meta.guard is None:
        log.debug("%s: no out-of-distribution guard", folder)
        return None
    if isinstance(model, OnnxModel) and model.path.name == INT8 and not int8_state(meta)[1]:
        log.warning(
            "%s: the guard is off on the int8 model (not judged with this guard); run "
            "`pneumonia export %s --int8 --data MANIFEST --force`",
            folder,
            folder,
        )
        return None
    if isinstance(model, OnnxModel) and not model.has_features:
        log.warning(
            "%s: %s predates the guard's features output, so the guard is off; run "
            "`pneumonia export %s --onnx --force`",
            folder,
            model.path.name,
            folder,
        )
        return None
    layout = meta.guard.layout["threshold"] if meta.guard.layout else None
    path = verify_file(folder, meta, meta.guard.file)
    try:
        return load_guard(path, meta.guard.threshold, layout)
    except ValueError as exc:
        raise BundleError(f"{exc}; restore the bundle's {META} and {GUARD}") from None
