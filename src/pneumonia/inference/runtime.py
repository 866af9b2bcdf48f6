"""Networks as NumPy functions: ONNX Runtime without PyTorch, or a PyTorch module.

This module is on the lean inference path: it imports neither torch nor lightning nor timm;
handed a PyTorch module, it passes it to `pneumonia.modeling.network`, loaded by name.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import import_module
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
    return torch_side().network_heads(model, x, features)


def torch_available() -> bool:
    """Whether PyTorch (the training install) can be imported here."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def torch_side() -> Any:
    """`pneumonia.modeling.network`, loaded by name when a PyTorch network is asked for: this
    package never imports PyTorch itself (the lean install has none)."""
    return import_module("pneumonia.modeling.network")
