"""Networks as NumPy functions: ONNX Runtime without PyTorch, or a PyTorch module.

This module is on the lean inference path: importing it loads neither torch nor lightning
nor timm. `run_network` imports torch only when it is handed a PyTorch module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.progress import default_workers

log = logging.getLogger(__name__)
BACKENDS = ("auto", "onnx", "int8", "torch")


class OnnxModel:
    """An ONNX Runtime session on the CPU: float32 N x 1 x S x S in, N x 1 logits out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_workers()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: Any) -> np.ndarray:
        array = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
        return np.asarray(self.session.run(None, {self.input: array})[0])

    def eval(self) -> OnnxModel:
        return self


def run_network(model: Any, x: np.ndarray) -> np.ndarray:
    """Logits, shape (N,), of `model` for the float32 batch `x` (N x 1 x S x S): ONNX Runtime
    directly, a PyTorch module (in eval mode) on its own device."""
    if isinstance(model, OnnxModel):
        return model(x).reshape(-1)
    import torch

    weights = next(model.parameters(), None)
    device = weights.device if weights is not None else torch.device("cpu")
    batch = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    with torch.inference_mode():  # NHWC: twice the images/s of NCHW on this CPU (benchmarks)
        out = model(batch.contiguous(memory_format=torch.channels_last))
        return np.asarray(out.reshape(-1).float().cpu().numpy())


def torch_available() -> bool:
    """Whether PyTorch (the training install) can be imported here."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None
