"""`pneumonia explain`: class activation maps with pytorch-grad-cam, drawn on the original image.

The CAM is computed on the model's input square, mapped back through the preprocessing
geometry (letterbox or centre crop) and drawn on the original grayscale image at its own size,
beside the untouched image, with the probability and label on top. It shows where the
network's evidence came from: a qualitative aid to spot shortcuts (text, markers, borders),
never a localisation of disease.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

from pneumonia.core.errors import ImageError, PneumoniaError
from pneumonia.core.meta import Architecture
from pneumonia.data.image_io import load_gray
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import Prediction, prediction, score_squares, to_probability
from pneumonia.modeling.models import get_spec
from pneumonia.modeling.network import to_tensor

log = logging.getLogger(__name__)
METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM}
CAVEAT = "qualitative aid, not a diagnosis or a localisation"
MAX_SIDE = 2048  # larger originals are drawn at this size


@dataclass
class Explanation:
    """One image: its original pixels, the CAM at the same size (0..1), and the prediction."""

    path: str
    gray: np.ndarray
    cam: np.ndarray
    probability: float
    label: str
    method: str
    in_distribution: bool | None = None  # the guard's verdict; None: no guard
    ood_score: float | None = None


class ScreeningTarget:
    """pytorch-grad-cam's BinaryClassifierOutputTarget on the screening logit alone: column 0
    where the network also gives the subtype's."""

    def __init__(self, category: int) -> None:
        self.inner = BinaryClassifierOutputTarget(category)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return self.inner(model_output.reshape(-1)[0])


def _tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """ViT tokens (B, prefix + g*g, C) -> (B, C, g, g), dropping the class token(s)."""
    n = tokens.shape[1]
    side = math.isqrt(n - 1)
    prefix = n - side * side
    grid = tokens[:, prefix:, :].reshape(tokens.shape[0], side, side, tokens.shape[2])
    return grid.permute(0, 3, 1, 2)


def class_activation(
    model: torch.nn.Module,
    architecture: str | Architecture,
    x: torch.Tensor,
    target: int,
    method: str,
) -> np.ndarray:
    """CAM (N x H x W, 0..1) of class `target` (1 PNEUMONIA, 0 NORMAL) at the registry's
    target layer for `architecture`; for an ensemble, the mean over its members' layers."""
    if method not in METHODS:
        raise PneumoniaError(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
    if isinstance(architecture, Architecture) and architecture.members is not None:
        names = [m.name for m in architecture.members]
        layers, reshape = model.cam_layers(names), None  # type: ignore[operator]
    else:
        name = architecture.name if isinstance(architecture, Architecture) else architecture
        spec = get_spec(name)
        reshape = _tokens_to_map if spec.tokens else None
        layers = [model.get_submodule(spec.cam_layer)]
    with METHODS[method](model=model, target_layers=layers, reshape_transform=reshape) as cam:
        if method == "scorecam":
            cam.batch_size = 32
        targets = [ScreeningTarget(target)] * x.shape[0]
        maps = cam(input_tensor=x, targets=targets)
    return np.nan_to_num(np.asarray(maps, dtype=np.float32)).clip(0, 1)


def cam_on_square(
    bundle: Bundle, square: np.ndarray, method: str = "gradcam"
) -> tuple[float, np.ndarray]:
    """(calibrated P(PNEUMONIA), CAM of the predicted class on the input square, 0..1)."""
    x = to_tensor(square[None], bundle.contract)
    with torch.inference_mode():
        logit = bundle.model(x).reshape(len(x), -1)[:, 0].numpy()  # screening, not subtype
        prob = float(to_probability(logit, bundle.temperature)[0])
    predicted = int(prob >= bundle.threshold)
    arch = bundle.meta.architecture
    return prob, class_activation(bundle.model, arch, x, predicted, method)[0]


def cam_to_original(cam: np.ndarray, height: int, width: int, resize: str) -> np.ndarray:
    """Undo the contract's geometry: the square's CAM -> the original image's pixels.

    With `stretch` the square is stretched back over the whole image; with `pad` the letterbox
    bars are cut off; with `crop` the parts of the image the model never saw get 0.
    """
    size = cam.shape[0]
    region = cam
    if resize != "stretch":
        scale = size / max(height, width) if resize == "pad" else size / min(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        if resize == "pad":
            top, left = (size - new_h) // 2, (size - new_w) // 2
            region = cam[top : top + new_h, left : left + new_w]
        else:
            region = np.zeros((new_h, new_w), dtype=np.float32)
            top, left = (new_h - size) // 2, (new_w - size) // 2
            region[top : top + size, left : left + size] = cam
    resized = Image.fromarray(region.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32).clip(0, 1)


def explain_image(bundle: Bundle, path: str, method: str = "gradcam") -> Explanation:
    """Read one image through the input door and explain the bundle's prediction on it."""
    return explain_gray(bundle, load_gray(path), path, method)


def explain_gray(
    bundle: Bundle, gray: np.ndarray, name: str, method: str, answer: Prediction | None = None
) -> Explanation:
    """Explain the bundle's prediction on decoded grayscale pixels (`name` labels them). The
    probability, label and guard verdict are the bundle's own, on its backend (or `answer`'s,
    a service's); the CAM is always the PyTorch network's, loaded from the bundle's folder
    when it runs on ONNX Runtime."""
    contract = bundle.contract
    square = contract.square(gray)
    network = bundle if bundle.backend == "torch" else load_bundle(bundle.path, "torch")
    prob, cam = cam_on_square(network, square, method)
    full = cam_to_original(cam, gray.shape[0], gray.shape[1], contract.resize)
    if answer is None and bundle.backend != "torch":  # the numbers of the model it was given
        p, score, viral = score_squares(bundle, [square])[0]
        answer = prediction(bundle, name, float(p), float(score), float(viral))
    verdict = answer or prediction(bundle, name, prob, float(score_squares(bundle, [square])[0, 1]))
    if answer is not None and answer.probability is not None:
        prob = answer.probability
    return Explanation(
        name, gray, full, prob, str(verdict.label), method, verdict.in_distribution,
        verdict.ood_score,
    )  # fmt: skip


def overlay_image(expl: Explanation, threshold: float, alpha: float = 0.5) -> Image.Image:
    """Original | CAM overlay side by side, with probability, label and the caveat on top."""
    gray = Image.fromarray(expl.gray)
    cam = Image.fromarray(expl.cam, mode="F")
    if max(gray.size) > MAX_SIDE:
        gray.thumbnail((MAX_SIDE, MAX_SIDE))
        cam = cam.resize(gray.size, Image.Resampling.BILINEAR)
    base = np.asarray(gray.convert("RGB"), dtype=np.float32)
    heat = np.asarray(cam, dtype=np.float32)[..., None]
    colored = colormaps["jet"](heat[..., 0])[..., :3] * 255
    blended = base * (1 - alpha * heat) + colored * (alpha * heat)
    w, h = gray.size
    header = max(28, w // 18)
    canvas = Image.new("RGB", (2 * w, h + header), (0, 0, 0))
    canvas.paste(gray.convert("RGB"), (0, header))
    canvas.paste(Image.fromarray(blended.clip(0, 255).astype(np.uint8)), (w, header))
    text = (
        f"P(PNEUMONIA) {expl.probability:.3f} -> {expl.label} (threshold {threshold:.3g})  |  "
        f"{expl.method}: {CAVEAT}"
    )
    if expl.in_distribution is False:
        text = f"NOT LIKE A CHEST X-RAY - do not trust  |  {text}"
    size = header * 3 // 5
    font = ImageFont.load_default(size=size)
    while size > 8 and font.getlength(text) > canvas.width * 0.97:
        size -= 1
        font = ImageFont.load_default(size=size)
    ImageDraw.Draw(canvas).text((header // 4, (header - size) // 2), text, fill="white", font=font)
    return canvas


def overlay_png(expl: Explanation, threshold: float) -> bytes:
    """`overlay_image` encoded as PNG bytes (for files and the web service)."""
    buffer = io.BytesIO()
    overlay_image(expl, threshold).save(buffer, format="PNG")
    return buffer.getvalue()


def explain_paths(
    bundle: Bundle, paths: list[str], out: Path, method: str = "gradcam"
) -> list[tuple[str, Explanation | None, str]]:
    """Explain every path into `out/<name>-<method>.png`: (path, explanation or None, the PNG
    written or the reason it could not be)."""
    out.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, Explanation | None, str]] = []
    for i, path in enumerate(paths):
        try:
            expl = explain_image(bundle, path, method)
        except ImageError as exc:
            log.warning("%s: %s", path, exc.reason)
            results.append((path, None, exc.reason))
            continue
        target = out / f"{i:03d}-{Path(path).stem}-{method.replace('++', 'pp')}.png"
        target.write_bytes(overlay_png(expl, bundle.threshold))
        results.append((path, expl, str(target)))
    return results
