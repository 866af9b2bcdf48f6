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
TTA_SHIFT = 0.04  # fraction of the side each TTA view is shifted by


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


def shift(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """Move a batch of images by (dy, dx) pixels; uncovered pixels get `fill`."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def tta_views(x: torch.Tensor, contract: Preprocessing) -> list[torch.Tensor]:
    """Test-time augmentation: the batch itself and four shifts by 4% of the side (up, down,
    left, right), filled with black as the letterbox is. No mirror: training has none either."""
    d = max(1, round(TTA_SHIFT * x.shape[-1]))
    black = (0.0 - contract.mean) / contract.std
    return [x, *(shift(x, dy, dx, black) for dy, dx in ((-d, 0), (d, 0), (0, -d), (0, d)))]


def logits(
    bundle: Bundle,
    squares: list[np.ndarray],
    batch_size: int = 32,
    show: bool = False,
    tta: bool = False,
) -> np.ndarray:
    """The bundle network's raw logits for contract squares (see `network_logits`)."""
    return network_logits(bundle.model, bundle.contract, squares, batch_size, show, tta)


def network_logits(
    model: torch.nn.Module,
    contract: Preprocessing,
    squares: list[np.ndarray],
    batch_size: int = 32,
    show: bool = False,
    tta: bool = False,
) -> np.ndarray:
    """Raw logits of `model` (in eval mode, on its own device) for contract squares, in
    batches; with `tta`, the mean logit over `tta_views`."""
    if not squares:
        return np.zeros(0, dtype=np.float32)
    weights = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    device = weights.device if weights is not None else torch.device("cpu")  # ONNX runs on CPU
    starts = range(0, len(squares), batch_size)
    out = []
    with torch.inference_mode():
        for i in track(starts, len(starts), "predicting", show):
            x = to_tensor(np.stack(squares[i : i + batch_size]), contract).to(device)
            views = tta_views(x, contract) if tta else [x]
            z = torch.stack([model(v).reshape(-1).float() for v in views]).mean(0)
            out.append(z.cpu().numpy())
    return np.concatenate(out)


def check_operating_point(bundle: Bundle) -> bool:
    """Warn, naming the fix, when the bundle's threshold was not chosen on validation data or
    the bundle records no validation results; True when all is in order."""
    tuned = bundle.meta.threshold.detail.get("on") == "validation"
    if tuned and bundle.meta.validation:
        return True
    log.warning(
        "%s: %s; its labels use threshold %.4g (rule %s) as stored. Choose one on validation "
        "data with `pneumonia threshold %s --data MANIFEST --out NEW`",
        bundle.path,
        "records no validation results"
        if tuned
        else "the threshold was not chosen on validation data",
        bundle.threshold,
        bundle.meta.threshold.rule,
        bundle.path,
    )
    return False


def check_tta(bundle: Bundle, tta: bool) -> None:
    """Warn when scoring with or without TTA unlike the scores the threshold was tuned on."""
    check_operating_point(bundle)
    tuned = bool(bundle.meta.threshold.detail.get("tta", False))
    if tuned != tta:
        log.warning(
            "%s: the threshold was tuned %s TTA and is applied %s it; re-tune with "
            "`pneumonia threshold%s` to match",
            bundle.path,
            "with" if tuned else "without",
            "with" if tta else "without",
            " --tta" if tta else "",
        )


def to_probability(raw_logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(PNEUMONIA) = sigmoid(logit / temperature), in float64."""
    return np.asarray(expit(np.asarray(raw_logits, dtype=np.float64) / temperature))


def probabilities(
    bundle: Bundle,
    squares: list[np.ndarray],
    batch_size: int = 32,
    show: bool = False,
    tta: bool = False,
) -> np.ndarray:
    """Calibrated P(PNEUMONIA) for contract squares (the bundle's temperature applied)."""
    return to_probability(logits(bundle, squares, batch_size, show, tta), bundle.temperature)


def predict_paths(
    bundle: Bundle,
    paths: list[str],
    batch_size: int = 32,
    workers: int | None = None,
    show: bool = True,
    tta: bool = False,
) -> list[Prediction]:
    """Predict every path; unreadable images get an error instead of a probability."""
    check_tta(bundle, tta)
    loaded = load_squares(paths, bundle.contract, workers, show)
    good = [i for i, sq in enumerate(loaded) if not isinstance(sq, str)]
    squares = [loaded[i] for i in good]
    probs = probabilities(bundle, squares, batch_size, show, tta)  # type: ignore[arg-type]
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
