"""The PyTorch side of a bundle: its network built, loaded from the weights file, run with its
pooled features, saved after training; images as tensors in its contract. The lean inference
path (`pneumonia.inference`) never imports this module: it loads it by name when it is
handed a PyTorch network or asked for the `torch` backend."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pneumonia.core.bundle import WEIGHTS, file_record, write_meta
from pneumonia.core.errors import BundleError
from pneumonia.core.meta import Architecture, BundleMeta
from pneumonia.core.outputs import plain_mode
from pneumonia.core.preprocess import Preprocessing, to_array

log = logging.getLogger(__name__)


def save_bundle(model: nn.Module, meta: BundleMeta, folder: Path) -> Path:
    """Write weights and metadata into `folder` (created; files inside are replaced). Only the
    weights travel: a guard, exports and the monitoring reference belong to files that are
    not written here, so they are dropped (`pneumonia guard`, `export` add them again)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"pneumonia": meta.contract_record()})
    plain_mode(weights)
    update = {
        "files": {WEIGHTS: file_record(weights)},
        "guard": None,
        "reference": {},
        "borderline": None,
        "exports": {},
    }  # fmt: skip (a band of other weights: dropped)
    meta = meta.model_copy(update=update)
    write_meta(meta, folder)
    log.info("bundle written: %s", folder)
    return folder


def build_network(arch: Architecture, contract: Preprocessing) -> nn.Module:
    """The untrained network an `Architecture` record describes (registry model or ensemble)."""
    if arch.members is None:
        from pneumonia.modeling.models import create_model

        return create_model(arch.name, in_chans=arch.in_chans, num_classes=arch.num_classes)
    from pneumonia.modeling.ensemble import EnsembleModel

    return EnsembleModel.from_members(arch.members, contract)


def load_network(folder: Path, meta: BundleMeta, weights: Path) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from pneumonia.modeling.models import ModelError

    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{weights}: cannot read weights ({exc})") from None
    arch = meta.architecture
    try:
        model = build_network(arch, meta.preprocessing)
        model.load_state_dict(state)
    except (ModelError, RuntimeError) as exc:
        raise BundleError(f"{folder}: weights do not fit {arch.name} ({exc})") from None
    return model.to(memory_format=torch.channels_last).eval()  # NHWC, as in training


def network_heads(
    model: nn.Module, x: np.ndarray, features: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(every output (N, outputs), pooled features (N, D) or None) of a PyTorch module in eval
    mode, on its own device, for the float32 batch `x` (`inference.runtime.network_heads` for
    any backend); the features are captured from the inputs of its head layer(s).
    """
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


def to_tensor(square: np.ndarray, contract: Preprocessing) -> torch.Tensor:
    """`to_array` as a torch tensor (for training and PyTorch inference)."""
    return torch.from_numpy(to_array(square, contract))
