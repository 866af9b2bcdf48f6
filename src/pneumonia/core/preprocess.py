"""The one preprocessing contract: grayscale, a square of one size, recorded normalisation.

Every image that reaches a model goes through `Preprocessing.square` (done once, when the
cache is prepared, or at prediction time: the optional `render` step, then `fit_to_square`)
and then `to_array` (`pneumonia.modeling.network.to_tensor` for PyTorch). The contract's
fields travel with every model bundle, so inference repeats exactly what training did.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

CACHE_FORMAT = 1
"""Bump when the cached array layout changes, so old caches are rebuilt."""


class Render(BaseModel):
    """A rendering every image gets before the contract's resize: squashed (or letterboxed or
    cut, as the contract's `resize` says) to `side` x `side` and saved as JPEG at `quality`,
    then read back, and with `blur` smoothed by a Gaussian. The Kaggle copies were made this
    way from their originals (224 px, quality 75), so an original reaches the network as its
    copy does; the blur evens out the pixel-level JPEG noise in which an original's rendering
    still differs from its copy (docs/robustness.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    side: int = Field(224, ge=8, le=4096, description="side of the rendered square")
    quality: int = Field(75, ge=1, le=100, description="JPEG quality it is saved at")
    blur: float = Field(
        0.0, ge=0.0, le=8.0, description="Gaussian sigma in pixels of the rendered square; 0: none"
    )

    def apply(self, gray: np.ndarray, resize: str) -> np.ndarray:
        """A decoded 2-D uint8 image -> its rendered `side` x `side` uint8 square."""
        out = jpeg_round_trip(fit_to_square(gray, self.side, resize), self.quality)
        if self.blur > 0:
            blurred = Image.fromarray(out).filter(ImageFilter.GaussianBlur(self.blur))
            out = np.asarray(blurred, dtype=np.uint8)
        return out

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Without `blur` when it is 0: a render step recorded before `blur` existed keeps
        its cache key, its weights record and its model.json."""
        data: dict[str, object] = handler(self)
        if self.blur == 0:
            data.pop("blur", None)
        return data

    def describe(self) -> str:
        """One line for reports and cards."""
        blur = f", Gaussian blur sigma {self.blur:g} px" if self.blur > 0 else ""
        return f"{self.side}x{self.side} JPEG quality {self.quality}{blur} first"


class Preprocessing(BaseModel):
    """How a decoded grayscale image becomes a model input tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(192, ge=8, le=2048, description="side of the square model input")
    resize: Literal["stretch", "pad", "crop"] = Field(
        "pad",
        description="stretch: squash the whole image to the square; pad: keep its aspect, "
        "letterbox; crop: keep its aspect, fill, cut the long side",
    )
    mean: float = Field(0.449, description="subtracted after scaling uint8 to [0, 1]")
    std: float = Field(0.226, gt=0, description="divisor after subtracting mean")
    render: Render | None = Field(
        None, description="render every image as the training copies were, before the resize"
    )
    borders: Literal["keep", "trim"] = Field(
        "keep",
        description="trim: find the film inside uniform borders (a viewer's black canvas, "
        "shutter bars) and cut them off first; keep: the whole image",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Without `borders` when it is "keep": contracts recorded before it existed keep
        their model.json and cache key."""
        data: dict[str, object] = handler(self)
        if self.borders == "keep":
            data.pop("borders", None)
        return data

    def cache_key(self) -> str:
        """Short hash of the settings that change the cached pixels (not the normalisation)."""
        payload: dict[str, object] = {
            "v": CACHE_FORMAT, "size": self.image_size, "resize": self.resize
        }  # fmt: skip
        if self.render is not None:
            payload["render"] = self.render.model_dump()
        if self.borders != "keep":
            payload["borders"] = self.borders
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.image_size}-{self.resize}-{digest[:10]}"

    def square(self, gray: np.ndarray) -> np.ndarray:
        """A decoded 2-D uint8 image -> the model's uint8 square: the film inside its
        borders (with `borders` trim), `render`, then `fit_to_square`."""
        if self.borders == "trim":
            box = film_box(gray)
            if box is not None:
                gray = gray[box[0] : box[1], box[2] : box[3]]
        if self.render is not None:
            gray = self.render.apply(gray, self.resize)
        return fit_to_square(gray, self.image_size, self.resize)

    def describe(self) -> dict[str, object]:
        """The contract as plain data, for bundles and reports."""
        return {
            "channels": 1,
            "color": "grayscale (luminance), uint8 0..255 before scaling",
            "size": [self.image_size, self.image_size],
            "resize": self.resize,
            "value_range": "x / 255 in [0, 1], then (x - mean) / std",
            "mean": self.mean,
            "std": self.std,
            "render": None if self.render is None else self.render.describe(),
            "borders": self.borders,
        }


RESIZE_MODES = ("stretch", "pad", "crop")
UNIFORM = 8  # grey levels a border line may span (JPEG leaves near-flat bars near-flat)
LEAST_BORDERS = 0.15  # of a side, the two borders across it together: thinner are left alone
LEAST_FILM = 0.25  # of each side the film must keep: else it is no film in bars


RINGING = 0  # lines past a uniform border JPEG ringing may leave near-black (candidate C: 12)
NEAR = 16  # grey levels from the border's own within which such a line's mean must lie


def _extend(run: int, means: np.ndarray) -> int:
    """A uniform border of `run` lines, extended over the next lines (at most `RINGING`)
    whose mean stays within `NEAR` of the border's: what a JPEG's blocks leave of a bar."""
    if run == 0:
        return 0
    level = float(np.median(means[:run]))
    extra = 0
    while extra < RINGING and run + extra < len(means) and abs(means[run + extra] - level) <= NEAR:
        extra += 1
    return run + extra


def _edge_run(flat: np.ndarray, means: np.ndarray) -> tuple[int, int]:
    """How many lines at the start and at the end are border: uniform (`flat`, bools) in a
    row, then JPEG's ringing past them (`_extend`)."""
    if flat.all():
        return len(flat), 0
    start, end = int(np.argmin(flat)), int(np.argmin(flat[::-1]))
    return _extend(start, means), _extend(end, means[::-1])


def film_box(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the film inside uniform borders: rows and columns at the
    edges whose grey levels span at most `UNIFORM`; None unless the two borders across one
    side together make `LEAST_BORDERS` of it (the Kaggle copies' own dark strips, 2-8% of the
    width, are left alone: docs/robustness.md), or when less than `LEAST_FILM` of a side would
    be left."""
    h, w = gray.shape
    rows = (gray.max(axis=1).astype(np.int16) - gray.min(axis=1)) <= UNIFORM
    top, bottom = _edge_run(rows, gray.mean(axis=1))
    if top + bottom >= h * (1 - LEAST_FILM):
        return None
    inner = gray[top : h - bottom]
    cols = (inner.max(axis=0).astype(np.int16) - inner.min(axis=0)) <= UNIFORM
    left, right = _edge_run(cols, inner.mean(axis=0))
    if left + right >= w * (1 - LEAST_FILM):
        return None
    if top + bottom < h * LEAST_BORDERS and left + right < w * LEAST_BORDERS:
        return None
    return top, h - bottom, left, w - right


def fit_to_square(gray: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """Resize a 2-D uint8 image to `size`x`size`.

    `stretch` squashes the whole image to the square, whatever its aspect ratio (as the Kaggle
    copies were made from their wide originals, and as `Resize((s, s))` does); `pad` scales the
    long side to `size` and centres the image on black (air is black on a chest X-ray, so
    padding reads as background); `crop` scales the short side to `size` and cuts the centre.
    A square image gives the same pixels in every mode.
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {gray.dtype} with shape {gray.shape}")
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; use one of {', '.join(RESIZE_MODES)}")
    h, w = gray.shape
    if mode == "stretch":
        new_w, new_h = size, size
    else:
        scale = size / max(h, w) if mode == "pad" else size / min(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(
        Image.fromarray(gray).resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    )
    if mode == "pad":
        out = np.zeros((size, size), dtype=np.uint8)
        top, left = (size - new_h) // 2, (size - new_w) // 2
        out[top : top + new_h, left : left + new_w] = resized
        return out
    top, left = (new_h - size) // 2, (new_w - size) // 2  # crop (stretch: 0, 0)
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def jpeg_round_trip(gray: np.ndarray, quality: int) -> np.ndarray:
    """A 2-D uint8 image saved as (baseline, grayscale) JPEG at `quality` and read back."""
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return np.asarray(img.convert("L"), dtype=np.uint8)


def to_array(square: np.ndarray, contract: Preprocessing) -> np.ndarray:
    """uint8 HxW (or NxHxW) array -> float32 array 1xHxW (or Nx1xHxW), normalised."""
    x = np.asarray(square, dtype=np.float32) / np.float32(255.0)
    x = np.expand_dims(x, -3)
    return np.ascontiguousarray((x - np.float32(contract.mean)) / np.float32(contract.std))


def square_stats(squares: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image input statistics of contract squares (N, S, S) uint8: mean and standard
    deviation of the pixels in [0, 1] (the prediction log's and `monitor`'s reference's)."""
    x = squares.reshape(len(squares), -1).astype(np.float32) / 255.0
    return {"brightness": x.mean(1), "contrast": x.std(1)}
