"""`pneumonia export BUNDLE --onnx`: the network as ONNX, checked against PyTorch.

`model.onnx` is written inside the bundle folder with a dynamic batch axis (input `image`,
N x 1 x S x S, the bundle's preprocessing contract; outputs `logit`, N x 1 (N x 2 with the
subtype head: screening, then subtype), and `features`,
N x D, the pooled features the classifier head reads and the out-of-distribution guard
scores). TensorFlow-style 'SAME' convolutions (timm's `tf_` networks) compute their padding
from the input's shape at every call; the export fixes it for the contract's size, which
ONNX Runtime then folds into the convolutions (a quarter more images/s, docs/benchmarks.md).
Before it is kept, probabilities from ONNX Runtime and from PyTorch are compared on
random and synthetic inputs; a difference of 1e-4 or more is refused. `model.json` then
records the file's sha256 and the parity, so the ONNX backend (`--backend auto`, the
default, or `onnx`) can verify it like the weights.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pneumonia.core.bundle import ONNX, file_record, write_meta
from pneumonia.core.errors import PneumoniaError
from pneumonia.data.synthetic import synthetic_xray
from pneumonia.inference.loading import Bundle
from pneumonia.inference.predictions import to_probability
from pneumonia.inference.runtime import FEATURES, OnnxModel, network_heads
from pneumonia.modeling.network import head_inputs, to_tensor

log = logging.getLogger(__name__)
OPSET = 17
PARITY_LIMIT = 1e-4


def parity_inputs(bundle: Bundle, seed: int = 0) -> torch.Tensor:
    """Random noise and synthetic X-rays in the bundle's contract: the parity check's batch."""
    size = bundle.contract.image_size
    rng = np.random.default_rng(seed)
    xrays = [
        bundle.contract.square(synthetic_xray(label, size, size + 17 * i, rng))
        for i, label in enumerate(("NORMAL", "PNEUMONIA", "PNEUMONIA"))
    ]
    noise = torch.from_numpy(rng.normal(0, 1, (3, 1, size, size)).astype(np.float32))
    return torch.cat([to_tensor(np.stack(xrays), bundle.contract), noise])


def static_padding(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """A copy of `model` in which every timm `Conv2dSame` (padding computed from the input's
    shape at each call) becomes a constant `ZeroPad2d` and a plain convolution, as they
    are for inputs of `example`'s height and width; the same numbers, a graph without shape
    arithmetic."""
    from timm.layers import Conv2dSame
    from timm.layers.padding import pad_same_arg

    model = copy.deepcopy(model).eval()
    shapes: dict[str, list[int]] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda _, args, name=name: shapes.__setitem__(name, list(args[0].shape[-2:]))
        )
        for name, module in model.named_modules()
        if isinstance(module, Conv2dSame)
    ]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    for name, shape in shapes.items():
        same = model.get_submodule(name)
        assert isinstance(same, Conv2dSame)
        kernel, stride, dilation = (
            _pair(v) for v in (same.kernel_size, same.stride, same.dilation)
        )
        plain = torch.nn.Conv2d(
            same.in_channels, same.out_channels, kernel, stride, 0, dilation, same.groups,
            same.bias is not None,
        )  # fmt: skip
        plain.load_state_dict(same.state_dict())
        left, right, top, bottom = pad_same_arg(shape, list(kernel), list(stride), list(dilation))
        pad = torch.nn.ZeroPad2d((left, right, top, bottom))
        model.set_submodule(name, torch.nn.Sequential(pad, plain))
    return model


def _pair(value: Any) -> tuple[int, int]:
    return int(value[0]), int(value[1])


class WithFeatures(torch.nn.Module):
    """A network that also returns the pooled features its classifier head(s) read."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with head_inputs(self.model) as captured:
            out = self.model(x)
        return out, torch.cat(captured, 1)


def _parity(bundle: Bundle, path: Path) -> dict[str, float]:
    x = parity_inputs(bundle).numpy()
    ref, ref_features = network_heads(bundle.model, x)
    got, features = OnnxModel(path).outputs(x)
    got = got.reshape(len(x), -1)
    if features is None or ref_features is None:
        raise PneumoniaError(f"{path}: the export has no {FEATURES} output")
    if got.shape != ref.shape:
        raise PneumoniaError(f"{path}: {got.shape[1]} outputs where the network has {ref.shape[1]}")
    t = bundle.temperature
    scale = float(np.abs(ref_features).max()) or 1.0
    found = {
        "max_abs_diff_logit": float(np.abs(got[:, 0] - ref[:, 0]).max()),
        "max_abs_diff_probability": float(
            np.abs(to_probability(got[:, 0], t) - to_probability(ref[:, 0], t)).max()
        ),
        "max_rel_diff_features": float(np.abs(features - ref_features).max() / scale),
        "images": len(x),
    }
    if ref.shape[1] > 1:  # the subtype head
        found["max_abs_diff_subtype_logit"] = float(np.abs(got[:, 1] - ref[:, 1]).max())
    return found


def export_onnx(bundle: Bundle, force: bool = False) -> dict[str, Any]:
    """Write `model.onnx` into the bundle, check parity, record it in `model.json`."""
    if bundle.backend != "torch":
        raise PneumoniaError(f"{bundle.path}: export needs the PyTorch network (backend torch)")
    target = bundle.path / ONNX
    if target.exists() and not force:
        raise PneumoniaError(f"{target}: already exists; pass --force to export again")
    size = bundle.contract.image_size
    example = torch.zeros(1, 1, size, size)
    tmp = target.with_suffix(".onnx.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            WithFeatures(static_padding(bundle.model, example)).eval(),
            (example,),
            str(tmp),
            dynamo=False,
            input_names=["image"],
            output_names=["logit", FEATURES],
            dynamic_axes={"image": {0: "batch"}, "logit": {0: "batch"}, FEATURES: {0: "batch"}},
            opset_version=OPSET,
        )
    return adopt_onnx(bundle, tmp)


def adopt_onnx(bundle: Bundle, tmp: Path) -> dict[str, Any]:
    """Check the ONNX file `tmp` against the bundle's PyTorch network (every output and the
    features): keep it as the bundle's `model.onnx` and record it, or delete it and fail."""
    import onnxruntime

    target, size = bundle.path / ONNX, bundle.contract.image_size
    parity = _parity(bundle, tmp)
    worst = max(
        parity["max_abs_diff_probability"],
        parity["max_rel_diff_features"],
        parity.get("max_abs_diff_subtype_logit", 0.0),
    )
    if worst >= PARITY_LIMIT:
        tmp.unlink()
        raise PneumoniaError(
            f"ONNX export of {bundle.path} differs from PyTorch by {worst:.2e} in probability, "
            f"subtype logit or relative feature value (limit {PARITY_LIMIT}); not written"
        )
    tmp.replace(target)
    info = {
        "file": ONNX,
        "opset": OPSET,
        "input": f"image: N x 1 x {size} x {size} float32 (the preprocessing contract)",
        "output": f"logit: N x {bundle.meta.architecture.num_classes} (column 0: apply "
        "calibration.temperature and the threshold; column 1, with the subtype head: "
        "subtype); features: N x D (the guard's input)",
        **parity,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    meta = bundle.meta.model_copy(
        update={
            "files": {**bundle.meta.files, ONNX: file_record(target)},
            "exports": {**bundle.meta.exports, "onnx": info},
        }
    )
    write_meta(meta, bundle.path)
    log.info("ONNX model written: %s (parity %.2e)", target, parity["max_abs_diff_probability"])
    return {"path": str(target), **info}
