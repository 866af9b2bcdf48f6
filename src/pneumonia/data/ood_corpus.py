"""Images that are not pediatric frontal chest X-rays, for measuring the out-of-distribution
guard: noise, blank frames, gradients, natural-image-like textures, cartoons, text documents,
and X-rays made unusable (inverted, heavily cropped). Generated, never downloaded.

Every generator maps (generator, height, width) to a 2-D uint8 image; the two X-ray kinds
transform a given X-ray instead. `ood_corpus` draws a labelled set of all kinds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Maker = Callable[[np.random.Generator, int, int], np.ndarray]
WORDS = (
    "invoice", "total", "amount", "due", "payment", "received", "thank", "you", "for", "your",
    "order", "account", "number", "meeting", "agenda", "minutes", "report", "summary", "the",
)  # fmt: skip


def noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Uniform random pixels."""
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def blank(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One grey level everywhere: black, white or in between (with faint sensor noise)."""
    level = float(rng.choice(np.array([0, 255, rng.integers(1, 255)])))
    return np.clip(level + rng.normal(0, 0.5, (h, w)), 0, 255).astype(np.uint8)


def gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A linear ramp in a random direction between two random grey levels."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    lo, hi = sorted(rng.uniform(0, 255, 2))
    return (lo + (hi - lo) * ramp).astype(np.uint8)


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Natural-image-like texture: noise with a 1/f^a spectrum, a in [1.5, 2.5] (the
    statistics of photographs of scenes)."""
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.rfftfreq(w), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    spectrum = radius ** (-rng.uniform(1.5, 2.5) / 2) * np.exp(
        2j * np.pi * rng.random(radius.shape)
    )
    spectrum[0, 0] = 0
    img = np.fft.irfft2(spectrum, s=(h, w))
    img = (img - img.mean()) / (img.std() + 1e-9)
    return np.clip(128 + 45 * img, 0, 255).astype(np.uint8)


def cartoon(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Flat-coloured shapes with dark outlines on a light background, as drawn art."""
    img = Image.new("L", (w, h), int(rng.integers(180, 256)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 10))):
        x0, x1 = sorted(rng.integers(0, w, 2))
        y0, y1 = sorted(rng.integers(0, h, 2))
        box = (int(x0), int(y0), int(x1) + 4, int(y1) + 4)
        fill, width = int(rng.integers(0, 256)), max(1, min(h, w) // 60)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill, outline=0, width=width)
        else:
            draw.rectangle(box, fill=fill, outline=0, width=width)
    return np.asarray(img)


def document(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Lines of dark text on a white page."""
    img = Image.new("L", (w, h), int(rng.integers(225, 256)))
    draw = ImageDraw.Draw(img)
    size = max(8, h // 28)
    font = ImageFont.load_default(size=size)
    y = size
    while y < h - size:
        line = " ".join(rng.choice(WORDS, int(rng.integers(3, 12))))
        draw.text((size, y), line, fill=int(rng.integers(0, 60)), font=font)
        y += int(size * rng.uniform(1.4, 2.2))
    return np.asarray(img)


def inverted(xray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An X-ray with its look-up table inverted (a negative)."""
    return 255 - xray


def cropped(xray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small piece of an X-ray (15-30% of each side, anywhere), as a careless crop."""
    h, w = xray.shape
    fraction = rng.uniform(0.15, 0.3)
    ch, cw = max(8, round(h * fraction)), max(8, round(w * fraction))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return np.ascontiguousarray(xray[y : y + ch, x : x + cw])


MAKERS: dict[str, Maker] = {
    "noise": noise,
    "blank": blank,
    "gradient": gradient,
    "texture": texture,
    "cartoon": cartoon,
    "document": document,
}
FROM_XRAYS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "inverted": inverted,
    "cropped": cropped,
}
KINDS = (*MAKERS, *FROM_XRAYS)


def ood_corpus(
    per_kind: int, xrays: list[np.ndarray], seed: int = 0, size_range: tuple[int, int] = (96, 320)
) -> list[tuple[str, np.ndarray]]:
    """(kind, image) pairs: `per_kind` of each kind in `KINDS`; the X-ray kinds transform
    the given `xrays` in turn (none given: those kinds are left out)."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, make in MAKERS.items():
        for _ in range(per_kind):
            h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
            out.append((kind, make(rng, h, w)))
    for kind, transform in FROM_XRAYS.items():
        out += [
            (kind, transform(xrays[i % len(xrays)], rng)) for i in range(per_kind if xrays else 0)
        ]
    return out
