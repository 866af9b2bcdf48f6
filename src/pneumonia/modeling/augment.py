"""Training augmentation: what differs between X-rays that should get the same answer.

Geometry (aspect, rotation, shift, zoom), exposure (gamma, brightness, contrast) and
provenance: the same film rendered by another pipeline (`Rerender`: another resolution and
resampling filter, JPEG at another quality, a blur or a sharpening, fewer grey levels). The
Kaggle copies every model here learns from were squashed to 224 px and saved as JPEG at
quality 75; users bring the originals, DICOM and PNG exports of them, so a model must not read
the copies' compression texture (docs/robustness.md, "Real files").
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.nn import functional
from torchvision.transforms import v2

from pneumonia.core.config import AugmentConfig
from pneumonia.core.preprocess import jpeg_round_trip

RENDER_OPS = ("jpeg", "blur", "sharpen", "bits")
DOWN_FILTERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.BOX)


class AspectStretch(torch.nn.Module):
    """Re-shape the image to a random width/height ratio in [low, high] (log-uniform).

    `letterbox`: squeeze one side and centre the image on black, as a `pad` contract shows a
    wide or tall original. `fill`: stretch one side and cut it back to the frame, as a
    `stretch` (or `crop`) contract shows an original whose aspect differs from the ones the
    training copies were squashed from; no black bands appear.
    """

    def __init__(self, low: float, high: float, mode: str = "letterbox") -> None:
        super().__init__()
        if mode not in ("letterbox", "fill"):
            raise ValueError(f"unknown aspect mode {mode!r}; use 'letterbox' or 'fill'")
        self.low, self.high, self.fill = math.log(low), math.log(high), mode == "fill"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        aspect = math.exp(self.low + (self.high - self.low) * float(torch.rand(())))
        h, w = x.shape[-2:]
        if self.fill:  # stretch one side, then cut the centre back to h x w
            nh, nw = (
                (h, max(w, round(w * aspect))) if aspect >= 1 else (max(h, round(h / aspect)), w)
            )
        else:  # squeeze one side, then letterbox
            nh, nw = (
                (max(1, round(h / aspect)), w) if aspect >= 1 else (h, max(1, round(w * aspect)))
            )
        resized = functional.interpolate(x[None], (nh, nw), mode="bilinear", antialias=True)[0]
        if self.fill:
            top, left = (nh - h) // 2, (nw - w) // 2
            return resized[..., top : top + h, left : left + w].contiguous()
        out = torch.zeros_like(x)
        top, left = (h - nh) // 2, (w - nw) // 2
        out[..., top : top + nh, left : left + nw] = resized
        return out


class RandomGamma(torch.nn.Module):
    """x ** gamma with gamma log-uniform in [1/(1+g), 1+g] (display look-up tables differ)."""

    def __init__(self, g: float) -> None:
        super().__init__()
        self.log_max = math.log1p(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = math.exp(self.log_max * (2 * float(torch.rand(())) - 1))
        return x.clamp(0.0, 1.0).pow(gamma)


class Rerender(torch.nn.Module):
    """The image as another pipeline would have rendered it (a 1xHxW tensor in [0, 1]).

    Up to `scale_max` times larger (log-uniform; the originals are 400-2900 px), then one of
    `RENDER_OPS` at that size: JPEG at a quality drawn in [jpeg_min, 95], a Gaussian blur or an
    unsharp mask of 0.3-1.2 px, or 5-7 bits of grey; then back to the frame by a resampling
    filter drawn from `DOWN_FILTERS` (Pillow's, antialiased, as the contract's own resize)."""

    def __init__(self, scale_max: float = 3.0, jpeg_min: int = 40) -> None:
        super().__init__()
        if scale_max < 1 or not 1 <= jpeg_min <= 95:
            raise ValueError(f"need scale_max >= 1 and jpeg_min in 1..95: {scale_max}, {jpeg_min}")
        self.log_scale, self.jpeg_min = math.log(scale_max), jpeg_min

    @staticmethod
    def _draw(n: int) -> int:
        return int(torch.randint(n, ()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        scale = math.exp(self.log_scale * float(torch.rand(())))
        pixels = x[0].clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
        big = Image.fromarray(pixels).resize(
            (max(w, round(w * scale)), max(h, round(h * scale))), Image.Resampling.BICUBIC
        )
        big = self._render(big, RENDER_OPS[self._draw(len(RENDER_OPS))])
        back = big.resize((w, h), DOWN_FILTERS[self._draw(len(DOWN_FILTERS))])
        return torch.from_numpy(np.asarray(back, dtype=np.float32) / 255.0)[None]

    def _render(self, big: Image.Image, op: str) -> Image.Image:
        if op == "jpeg":
            quality = self.jpeg_min + self._draw(96 - self.jpeg_min)
            return Image.fromarray(jpeg_round_trip(np.asarray(big), quality))
        if op == "bits":
            shift = 1 + self._draw(3)  # 7, 6 or 5 bits of grey
            return big.point(lambda v: (v >> shift) << shift)
        radius = 0.3 + 0.9 * float(torch.rand(()))
        if op == "blur":
            return big.filter(ImageFilter.GaussianBlur(radius))
        return big.filter(ImageFilter.UnsharpMask(radius, percent=100, threshold=0))


def build_augment(cfg: AugmentConfig, resize: str = "pad") -> v2.Compose:
    """Training augmentation on a 1xHxW float tensor in [0, 1]: aspect stretch (letterboxed
    for a `pad` contract, filling the frame for the others, unless `aspect_mode` says),
    rotation, shift and zoom (in: tighter framing; out: black border), gamma,
    brightness/contrast, then (for a share `render_p`) another rendering."""
    steps: list[torch.nn.Module] = []
    if (cfg.aspect_min, cfg.aspect_max) != (1.0, 1.0):
        mode = cfg.aspect_mode
        if mode == "contract":
            mode = "letterbox" if resize == "pad" else "fill"
        stretch = AspectStretch(cfg.aspect_min, cfg.aspect_max, mode)
        steps.append(stretch if cfg.aspect_p >= 1 else v2.RandomApply([stretch], cfg.aspect_p))
    steps.append(
        v2.RandomAffine(
            degrees=cfg.rotation_degrees,
            translate=(cfg.translate, cfg.translate),
            scale=(cfg.scale_min, cfg.scale_max),
            fill=0.0,
        )
    )
    if cfg.gamma > 0:
        steps.append(RandomGamma(cfg.gamma))
    steps.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.render_p > 0:
        render = Rerender(cfg.render_scale_max, cfg.render_jpeg_min)
        steps.append(render if cfg.render_p >= 1 else v2.RandomApply([render], cfg.render_p))
    return v2.Compose(steps)
