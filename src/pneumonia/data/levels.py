"""Grey levels of any depth -> the 8 bits every model here reads."""

from __future__ import annotations

import numpy as np


def to_uint8_bits(arr: np.ndarray) -> np.ndarray:
    """Integer grey levels -> 8 bits by their bit depth: the fewest of 8 to 32 bits that hold the
    largest value. An 8-bit image saved as 16 bits (x 257) reads back as itself, a 12-bit image
    in a 16-bit file keeps its brightness; negative values: by the range instead."""
    arr = np.asarray(arr)
    if arr.size == 0 or int(arr.min()) < 0:
        return to_uint8_range(arr)
    bits = max(8, int(arr.max()).bit_length())
    return np.round(arr.astype(np.float64) * (255.0 / (2**bits - 1))).astype(np.uint8)


def to_uint8_range(arr: np.ndarray) -> np.ndarray:
    """Grey levels -> 8 bits by their own range (darkest 0, brightest 255)."""
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("pixel values that are not finite numbers (NaN or infinity)")
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)
