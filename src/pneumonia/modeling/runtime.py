"""Networks as NumPy functions: ONNX Runtime without PyTorch, or a PyTorch module.

This module is on the lean inference path: importing it loads neither torch nor lightning
nor timm. `run_network` imports torch only when it is handed a PyTorch module.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pneumonia.core.progress import default_workers

log = logging.getLogger(__name__)
BACKENDS = ("auto", "onnx", "int8", "torch")
FEATURES = "features"  # the ONNX output with the pooled features the classifier head reads
Item = TypeVar("Item")
Result = TypeVar("Result")


class OnnxModel:
    """An ONNX Runtime session on the CPU: float32 N x 1 x S x S in, N x K logits out (K = 2
    with the subtype head: screening, subtype) (and,
    from exports that have it, the N x D pooled `features` output the guard reads).

    Each call runs on one thread, and up to `lanes` calls (default: one per core) run at
    once from different threads (`inference.network_scores`, the service's micro-batcher):
    on this 2-core CPU two concurrent one-thread calls ran 402 images/s where one two-thread
    call ran 244, as this network's small layers gain little from splitting one call across
    cores (`benchmarks/ort_lanes.py`, docs/benchmarks.md)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        self.lanes = threads or default_workers()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.has_features = FEATURES in [o.name for o in self.session.get_outputs()]

    def __call__(self, x: Any) -> np.ndarray:
        return self.outputs(x)[0]

    def outputs(self, x: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(N x K logits, N x D features or None when the export has none)."""
        array = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
        found = self.session.run(None, {self.input: array})
        return np.asarray(found[0]), np.asarray(found[1]) if self.has_features else None

    def eval(self) -> OnnxModel:
        return self


def lanes(model: Any) -> int:
    """How many calls of `model` should run at once: an `OnnxModel`'s lanes; 1 for a PyTorch
    module, whose own threads already share every core within one call."""
    return int(getattr(model, "lanes", 1))


def lane_map(model: Any, fn: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
    """`fn` over `items`, in order, with as many calls at once as `model` has `lanes`; at most
    twice that many items are taken from `items` ahead of the results (a generator that
    decodes or augments keeps working while the network runs, in bounded memory)."""
    width = lanes(model)
    if width == 1:
        yield from map(fn, items)
        return
    running: deque[Future[Result]] = deque()
    with ThreadPoolExecutor(width) as pool:
        for item in items:
            running.append(pool.submit(fn, item))
            if len(running) > 2 * width:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


def run_network(model: Any, x: np.ndarray) -> np.ndarray:
    """Logits, shape (N,), of `model` for the float32 batch `x` (N x 1 x S x S): ONNX Runtime
    directly, a PyTorch module (in eval mode) on its own device."""
    return network_outputs(model, x, features=False)[0]


def network_outputs(
    model: Any, x: np.ndarray, features: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(screening logits (N,), pooled features (N, D) or None) of `model` for the batch `x`
    (see `network_heads`; a second output, the subtype's, is left out)."""
    found, feats = network_heads(model, x, features)
    return np.ascontiguousarray(found[:, 0]), feats


def network_heads(
    model: Any, x: np.ndarray, features: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(every output (N, outputs): the screening logit, then the subtype logit where the
    network has that head; pooled features (N, D) or None) of `model` for the batch `x`.
    Features are what the classifier head(s) read: from the ONNX `features` output, or
    captured from a PyTorch module's head inputs; None from an ONNX export without them."""
    if isinstance(model, OnnxModel):
        found, feats = model.outputs(x) if features else (model(x), None)
        return found.reshape(len(x), -1), feats
    import torch

    weights = next(model.parameters(), None)
    device = weights.device if weights is not None else torch.device("cpu")
    batch = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    with head_inputs(model, features) as captured, torch.inference_mode():
        out = model(batch.contiguous(memory_format=torch.channels_last))  # NHWC: 2x NCHW here
    found = np.asarray(out.reshape(len(x), -1).float().cpu().numpy())
    if not features:
        return found, None
    return found, np.asarray(torch.cat(captured, 1).float().cpu().numpy())


@contextmanager
def head_inputs(model: Any, active: bool = True) -> Iterator[list[Any]]:
    """While open, collects the inputs of the model's classification layer(s), flattened:
    the pooled features, one tensor per head and forward pass (nothing when not `active`)."""
    captured: list[Any] = []
    hooks = [
        layer.register_forward_pre_hook(lambda _m, inp: captured.append(inp[0].flatten(1)))
        for layer in (head_layers(model) if active else [])
    ]
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()


def head_layers(model: Any) -> list[Any]:
    """The classification layer(s) whose inputs are the pooled features: the network's own
    (`get_classifier`, as timm and our CNNs have it), or each ensemble member's."""
    members = getattr(model, "members", None)
    return [net.get_classifier() for net in (members if members is not None else [model])]


def torch_available() -> bool:
    """Whether PyTorch (the training install) can be imported here."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None
