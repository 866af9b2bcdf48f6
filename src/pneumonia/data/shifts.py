"""Realistic acquisition shifts of a chest X-ray, for the stress suite and threshold views.

Each shift maps a decoded 2-D uint8 grayscale image (at its own size, before the contract's
resize) to another one, as a different site, scanner, protocol or file pipeline might have
produced it: the originals' wide or tall aspect ratios, a tighter or wider field of view,
exposure and look-up-table differences, lower resolution, blur, noise, JPEG compression,
burned-in text and markers, a small rotation. Random parts (noise, marker placement) come
from a generator seeded by the suite's seed and the image's name, so a shifted view is the
same on every run and on every machine.

Sizes are fractions of the image, never pixels, so a 224-px copy and a 2000-px original get
the same shift.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pneumonia.core.errors import ImageError
from pneumonia.core.preprocess import Preprocessing, jpeg_round_trip
from pneumonia.data.image_io import read_image

Group = Literal["geometry", "exposure", "resolution", "noise", "artefact"]
ShiftFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]
CLEAN = "clean"


@dataclass(frozen=True)
class Shift:
    """One named, deterministic acquisition shift."""

    name: str
    group: Group
    description: str
    fn: ShiftFn
    scored: bool = True  # counted in the worst case; False: the model should refuse the input


def _resize(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    img = Image.fromarray(gray).resize(
        (max(1, width), max(1, height)), Image.Resampling.BILINEAR, reducing_gap=3.0
    )
    return np.asarray(img)


def stretch(gray: np.ndarray, aspect: float) -> np.ndarray:
    """Resample to width/height = `aspect` times the current ratio (> 1 wider, < 1 taller),
    keeping the pixel count about the same. The shared copies were squashed to squares from
    originals 1.15-1.5x wider than tall; stretching undoes that."""
    h, w = gray.shape
    root = float(np.sqrt(aspect))
    return _resize(gray, round(w * root), round(h / root))


def center_crop(gray: np.ndarray, fraction: float) -> np.ndarray:
    """The central `fraction` of each side: a tighter field of view."""
    h, w = gray.shape
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(gray[top : top + ch, left : left + cw])


def zoom_out(gray: np.ndarray, fraction: float, fill: int = 0) -> np.ndarray:
    """The image shrunk to `fraction` of each side, centred on a border of `fill`."""
    h, w = gray.shape
    small = _resize(gray, round(w * fraction), round(h * fraction))
    out = np.full_like(gray, fill)
    top, left = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out


def rotate(gray: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre (counter-clockwise for positive degrees), black corners."""
    img = Image.fromarray(gray).rotate(degrees, Image.Resampling.BILINEAR, fillcolor=0)
    return np.asarray(img)


def _lut(gray: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.clip(np.round(table), 0, 255).astype(np.uint8)[gray]


def gamma(gray: np.ndarray, value: float) -> np.ndarray:
    """Display gamma: out = 255 * (in / 255) ** value (> 1 darker mid-tones, < 1 brighter)."""
    return _lut(gray, 255.0 * (np.arange(256) / 255.0) ** value)


def contrast(gray: np.ndarray, factor: float) -> np.ndarray:
    """Scale contrast about the image's mean grey level."""
    mean = float(gray.mean())
    return _lut(gray, mean + (np.arange(256) - mean) * factor)


def black_level(gray: np.ndarray, level: int) -> np.ndarray:
    """Raise the black point: 0 -> `level`, 255 stays 255 (a washed-out, fogged film)."""
    return _lut(gray, level + np.arange(256) * (255 - level) / 255.0)


def invert(gray: np.ndarray) -> np.ndarray:
    """A negative: an inverted look-up table (MONOCHROME1 shown as MONOCHROME2)."""
    return (255 - gray).astype(np.uint8)


def down_up(gray: np.ndarray, side: int) -> np.ndarray:
    """Down-sample so the short side is `side` pixels, then back up: lost resolution."""
    h, w = gray.shape
    scale = side / min(h, w)
    if scale >= 1:
        return gray.copy()
    small = _resize(gray, round(w * scale), round(h * scale))
    return _resize(small, w, h)


def blur(gray: np.ndarray, fraction: float) -> np.ndarray:
    """Gaussian blur with a radius of `fraction` of the short side."""
    radius = fraction * min(gray.shape)
    return np.asarray(Image.fromarray(gray).filter(ImageFilter.GaussianBlur(radius)))


def noise(gray: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of `sigma` grey levels (quantum noise of a low dose)."""
    noisy = gray.astype(np.float32) + rng.normal(0.0, sigma, gray.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


MARKER_TEXTS = ("L", "R", "AP", "PORTABLE", "SUPINE", "12-03-2017", "ERECT")


def burn_in_text(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White laterality markers and annotation text burned into corners and edges."""
    img = Image.fromarray(gray.copy())
    draw = ImageDraw.Draw(img)
    h, w = gray.shape
    size = max(6, round(0.06 * min(h, w)))
    font = ImageFont.load_default(size=size)
    corners = rng.permutation(4)[:3]
    for corner in corners:
        text = str(MARKER_TEXTS[int(rng.integers(len(MARKER_TEXTS)))])
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        margin = round(0.03 * min(h, w))
        x = margin if corner % 2 == 0 else w - (x1 - x0) - margin
        y = margin if corner < 2 else h - (y1 - y0) - margin
        draw.text((x - x0, y - y0), text, fill=255, font=font)
    return np.asarray(img)


def _fixed(fn: Callable[[np.ndarray], np.ndarray]) -> ShiftFn:
    return lambda gray, _rng: fn(gray)


def _catalogue() -> dict[str, Shift]:
    shifts = [
        Shift("wide_1.15", "geometry", "original-like: 1.15x wider than tall",
              _fixed(lambda g: stretch(g, 1.15))),
        Shift("wide_1.33", "geometry", "original-like: 1.33x wider than tall",
              _fixed(lambda g: stretch(g, 1.33))),
        Shift("wide_1.5", "geometry", "original-like: 1.5x wider than tall",
              _fixed(lambda g: stretch(g, 1.5))),
        Shift("tall_1.2", "geometry", "1.2x taller than wide (portrait detector)",
              _fixed(lambda g: stretch(g, 1 / 1.2))),
        Shift("crop_85", "geometry", "tighter field of view: central 85% of each side",
              _fixed(lambda g: center_crop(g, 0.85))),
        Shift("crop_70", "geometry", "much tighter field of view: central 70%",
              _fixed(lambda g: center_crop(g, 0.70))),
        Shift("zoom_out_80", "geometry", "wider field of view: image at 80% on a black border",
              _fixed(lambda g: zoom_out(g, 0.80))),
        Shift("rotate_+8", "geometry", "rotated 8 degrees counter-clockwise",
              _fixed(lambda g: rotate(g, 8.0))),
        Shift("rotate_-8", "geometry", "rotated 8 degrees clockwise",
              _fixed(lambda g: rotate(g, -8.0))),
        Shift("gamma_0.6", "exposure", "brighter mid-tones (gamma 0.6)",
              _fixed(lambda g: gamma(g, 0.6))),
        Shift("gamma_1.6", "exposure", "darker mid-tones (gamma 1.6)",
              _fixed(lambda g: gamma(g, 1.6))),
        Shift("contrast_0.6", "exposure", "contrast reduced to 60% about the mean",
              _fixed(lambda g: contrast(g, 0.6))),
        Shift("black_level_40", "exposure", "black point raised to 40 (fogged film)",
              _fixed(lambda g: black_level(g, 40))),
        Shift("inverted", "exposure", "inverted look-up table (a negative); to be refused",
              _fixed(invert), scored=False),
        Shift("down_96", "resolution", "short side down to 96 px and back up",
              _fixed(lambda g: down_up(g, 96))),
        Shift("down_64", "resolution", "short side down to 64 px and back up",
              _fixed(lambda g: down_up(g, 64))),
        Shift("blur_0.7", "resolution", "Gaussian blur, radius 0.7% of the short side",
              _fixed(lambda g: blur(g, 0.007))),
        Shift("blur_1.5", "resolution", "Gaussian blur, radius 1.5% of the short side",
              _fixed(lambda g: blur(g, 0.015))),
        Shift("noise_8", "noise", "Gaussian noise, sigma 8 grey levels",
              lambda g, rng: noise(g, 8.0, rng)),
        Shift("noise_16", "noise", "Gaussian noise, sigma 16 grey levels",
              lambda g, rng: noise(g, 16.0, rng)),
        Shift("jpeg_30", "noise", "JPEG quality 30", _fixed(lambda g: jpeg_round_trip(g, 30))),
        Shift("jpeg_10", "noise", "JPEG quality 10", _fixed(lambda g: jpeg_round_trip(g, 10))),
        Shift("text_markers", "artefact", "burned-in laterality markers and annotation text",
              burn_in_text),
    ]  # fmt: skip
    return {s.name: s for s in shifts}


SHIFTS: dict[str, Shift] = _catalogue()
"""Every shift of the suite, by name, in the suite's order."""


def shift_rng(seed: int, key: str, name: str) -> np.random.Generator:
    """The generator of shift `name` on the image called `key`: same inputs, same draws."""
    digest = hashlib.sha256(f"{seed}|{key}|{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def resolve(names: list[str] | None) -> list[str]:
    """Shift names, checked; None or empty means the whole suite."""
    if not names:
        return list(SHIFTS)
    unknown = [n for n in names if n not in SHIFTS and n != CLEAN]
    if unknown:
        raise ValueError(f"unknown shift(s) {', '.join(unknown)}; known: {', '.join(SHIFTS)}")
    return [n for n in names if n != CLEAN]


def check_views(names: list[str]) -> list[str]:
    """`operating.views` checked against the suite: a `ConfigError` names the unknown ones."""
    from pneumonia.core.errors import ConfigError

    unknown = [v for v in names if v not in SHIFTS]
    if unknown:
        raise ConfigError(
            f"operating.views: unknown shift(s) {unknown}; known: {', '.join(SHIFTS)}"
        )
    return names


def apply_shift(name: str, gray: np.ndarray, seed: int = 0, key: str = "") -> np.ndarray:
    """Shift `name` applied to a 2-D uint8 image; `clean` returns the image unchanged."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {gray.dtype} with shape {gray.shape}")
    if name == CLEAN:
        return gray
    shift = SHIFTS.get(name)
    if shift is None:
        raise ValueError(f"unknown shift {name!r}; known: {', '.join(SHIFTS)}")
    out = shift.fn(gray, shift_rng(seed, key, name))
    return np.ascontiguousarray(out, dtype=np.uint8)


def views_job(job: tuple[str, tuple[str, ...], int, Preprocessing]) -> np.ndarray | str:
    """(path, shift names, seed, contract) -> (1 + shifts, size, size) uint8, or why not."""
    path, names, seed, contract = job
    try:
        gray = read_image(path)[1].pixels
    except ImageError as exc:
        return exc.reason
    key = Path(path).name
    views = [contract.square(apply_shift(n, gray, seed, key)) for n in (CLEAN, *names)]
    return np.stack(views)
