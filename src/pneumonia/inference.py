"""Inference through the one input door: file -> grayscale -> contract square -> probability.

Decoding runs in worker processes; the network runs in batches. An image that cannot be read
becomes a row that says why; every other image is still predicted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit

from pneumonia import LABELS
from pneumonia.bundle import Bundle
from pneumonia.errors import DataError, ImageError
from pneumonia.image_io import IMAGE_SUFFIXES, read_image
from pneumonia.preprocess import Preprocessing, fit_to_square, to_tensor
from pneumonia.progress import parallel_map, track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One image's result: probability and label, or the reason it could not be read."""

    path: str
    probability: float | None
    label: str | None
    error: str | None = None


def load_square(job: tuple[str, int, str]) -> np.ndarray | str:
    """(path, size, resize) -> the contract's uint8 square, or the reason it failed."""
    path, size, resize = job
    try:
        return fit_to_square(read_image(path)[1].pixels, size, resize)
    except ImageError as exc:
        return exc.reason


def load_squares(
    paths: list[str], contract: Preprocessing, workers: int | None = None, show: bool = True
) -> list[np.ndarray | str]:
    """`load_square` for many paths, in parallel, order kept."""
    jobs = [(p, contract.image_size, contract.resize) for p in paths]
    return parallel_map(load_square, jobs, "reading images", workers, show)


def logits(
    bundle: Bundle, squares: list[np.ndarray], batch_size: int = 32, show: bool = False
) -> np.ndarray:
    """The network's raw logits for contract squares, in batches."""
    if not squares:
        return np.zeros(0, dtype=np.float32)
    starts = range(0, len(squares), batch_size)
    out = []
    with torch.inference_mode():
        for i in track(starts, len(starts), "predicting", show):
            x = to_tensor(np.stack(squares[i : i + batch_size]), bundle.contract)
            out.append(bundle.model(x).reshape(-1).float().numpy())
    return np.concatenate(out)


def to_probability(raw_logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(PNEUMONIA) = sigmoid(logit / temperature), in float64."""
    return np.asarray(expit(np.asarray(raw_logits, dtype=np.float64) / temperature))


def probabilities(
    bundle: Bundle, squares: list[np.ndarray], batch_size: int = 32, show: bool = False
) -> np.ndarray:
    """Calibrated P(PNEUMONIA) for contract squares (the bundle's temperature applied)."""
    return to_probability(logits(bundle, squares, batch_size, show), bundle.temperature)


def predict_paths(
    bundle: Bundle,
    paths: list[str],
    batch_size: int = 32,
    workers: int | None = None,
    show: bool = True,
) -> list[Prediction]:
    """Predict every path; unreadable images get an error instead of a probability."""
    loaded = load_squares(paths, bundle.contract, workers, show)
    good = [i for i, sq in enumerate(loaded) if not isinstance(sq, str)]
    probs = probabilities(bundle, [loaded[i] for i in good], batch_size, show)  # type: ignore[misc]
    results: list[Prediction] = [
        Prediction(p, None, None, sq if isinstance(sq, str) else None)
        for p, sq in zip(paths, loaded, strict=True)
    ]
    for i, prob in zip(good, probs, strict=True):
        label = LABELS[1] if prob >= bundle.threshold else LABELS[0]
        results[i] = Prediction(paths[i], float(prob), label)
    for r in results:
        if r.error:
            log.warning("%s: %s", r.path, r.error)
    return results


def expand_inputs(items: Iterable[str]) -> list[str]:
    """Files, folders (searched recursively for images) and glob patterns -> sorted paths."""
    found: list[str] = []
    for item in items:
        path = Path(item)
        if any(ch in item for ch in "*?["):
            base = Path(path.anchor or ".")
            pattern = str(path.relative_to(base)) if path.is_absolute() else item
            matches = sorted(p for p in base.glob(pattern) if p.is_file())
            if not matches:
                raise DataError(f"{item}: no files match this pattern")
            found += [str(p) for p in matches]
        elif path.is_dir():
            images = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not images:
                raise DataError(f"{item}: folder has no image files")
            found += [str(p) for p in images]
        else:
            found.append(item)  # a missing or unreadable file becomes a row that says why
    return list(dict.fromkeys(found))
