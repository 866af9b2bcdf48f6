"""Inference through the one input door: file -> grayscale -> contract square -> probability.

Images are decoded by threads a little ahead of the network, which runs in batches on the
bundle's backend (ONNX Runtime or PyTorch), so decoding overlaps inference; on ONNX Runtime
one batch per core runs at once, each on one thread (see `runtime.OnnxModel`). An image that
cannot be read becomes a row that says why; every other image is still predicted. This module
is on the lean path: it imports no PyTorch.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core import LABELS, SUBTYPES
from pneumonia.core.errors import DataError, ImageError
from pneumonia.core.options import Scoring
from pneumonia.core.preprocess import Preprocessing, to_array
from pneumonia.core.progress import default_workers, parallel_map, progress_bar
from pneumonia.data.dicom import decode_dataset
from pneumonia.data.image_io import IMAGE_SUFFIXES, read_image
from pneumonia.inference.loading import Bundle
from pneumonia.inference.runtime import lane_map, network_heads, run_network

log = logging.getLogger(__name__)
TTA_SHIFT = 0.04  # fraction of the side each TTA view is shifted by


@dataclass(frozen=True)
class Prediction:
    """One image's result: probability and label, or the reason it could not be read."""

    path: str
    probability: float | None
    label: str | None
    error: str | None = None
    in_distribution: bool | None = None  # None: the bundle has no guard
    ood_score: float | None = None
    subtype: str | None = None  # bacterial or viral where the label is PNEUMONIA and the
    subtype_probability: float | None = None  # bundle has the head: P(viral | pneumonia)
    borderline: bool | None = None  # within the bundle's band, where the file could decide
    # the label (None: the bundle records no band)


def load_square(job: tuple[str, Preprocessing]) -> np.ndarray | str:
    """(path, contract) -> the contract's uint8 square, or the reason it failed."""
    path, contract = job
    try:
        return contract.square(read_image(path)[1].pixels)
    except ImageError as exc:
        return exc.reason


def load_squares(
    paths: list[str], contract: Preprocessing, workers: int | None = None, show: bool = True
) -> list[np.ndarray | str]:
    """`load_square` for many paths, in worker processes, order kept."""
    jobs = [(p, contract) for p in paths]
    return parallel_map(load_square, jobs, "reading images", workers, show)


def stream_squares(
    paths: list[str], contract: Preprocessing, workers: int | None = None, ahead: int = 128
) -> Iterator[np.ndarray | str]:
    """`load_square` for many paths, in order, decoded by `workers` threads at most `ahead`
    images in front of the consumer (decoding and resizing release the GIL)."""
    with ThreadPoolExecutor(max(1, workers or default_workers())) as pool:
        pending: deque[Future[np.ndarray | str]] = deque()
        for path in paths:
            pending.append(pool.submit(load_square, (path, contract)))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def shift(x: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
    """Move a batch of images by (dy, dx) pixels; uncovered pixels get `fill`."""
    h, w = x.shape[-2:]
    out = np.full_like(x, fill)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def tta_views(x: np.ndarray, contract: Preprocessing) -> list[np.ndarray]:
    """Test-time augmentation: the batch itself and four shifts by 4% of the side (up, down,
    left, right), filled with black as the letterbox is. No mirror: training has none either."""
    d = max(1, round(TTA_SHIFT * x.shape[-1]))
    black = (0.0 - contract.mean) / contract.std
    return [x, *(shift(x, dy, dx, black) for dy, dx in ((-d, 0), (d, 0), (0, -d), (0, d)))]


def batch_outputs(
    model: Any, contract: Preprocessing, squares: list[np.ndarray], tta: bool, features: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(raw outputs (N, K): screening logit, then the subtype's where the network has it;
    pooled features of the unshifted view or None) for one batch of squares; with `tta` the
    screening logits are the mean over `tta_views`."""
    x = to_array(np.stack(squares), contract)
    found, feats = network_heads(model, x, features)
    if tta:
        shifted = [run_network(model, v) for v in tta_views(x, contract)[1:]]
        found[:, 0] = np.stack([found[:, 0], *shifted]).mean(axis=0)
    return found, feats


def guard_scores(
    bundle: Bundle, features: np.ndarray | None, squares: list[np.ndarray]
) -> np.ndarray:
    """The bundle guard's OOD scores for the contract `squares` and their `features` (NaN for
    all without a guard)."""
    if bundle.guard is None or features is None:
        return np.full(len(squares), np.nan)
    return bundle.guard.scores(features, squares)


def score_squares(bundle: Bundle, squares: list[np.ndarray], tta: bool = False) -> np.ndarray:
    """(N, 3): calibrated P(PNEUMONIA), the guard's OOD score (NaN without a guard) and
    P(viral | pneumonia) (NaN without a subtype head) for contract squares, in one network
    call (the service's batch function); with `tta` P is the mean over `tta_views`."""
    found, feats = batch_outputs(
        bundle.model, bundle.contract, squares, tta, bundle.guard is not None
    )
    probs = to_probability(found[:, 0], bundle.temperature)
    ood = guard_scores(bundle, feats, squares)
    return np.stack([probs, ood, subtype_probability(bundle, found)], axis=1)


def subtype_probability(bundle: Bundle, found: np.ndarray) -> np.ndarray:
    """P(viral | pneumonia) from raw outputs (N, K): NaN for all without a subtype head."""
    if bundle.meta.subtype is None or found.shape[1] < 2:
        return np.full(len(found), np.nan)
    return to_probability(found[:, 1], bundle.meta.subtype.temperature)


def logits(
    bundle: Bundle,
    squares: list[np.ndarray],
    batch_size: int = 32,
    show: bool = False,
    tta: bool = False,
) -> np.ndarray:
    """The bundle network's raw logits for contract squares (see `network_scores`)."""
    return network_scores(bundle.model, bundle.contract, squares, batch_size, show, tta)[0]


def network_scores(
    model: Any,
    contract: Preprocessing,
    squares: list[np.ndarray],
    batch_size: int = 32,
    show: bool = False,
    tta: bool = False,
    features: bool = False,
    every_output: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(raw logits, pooled features or None) of `model` (a PyTorch module in eval mode, on its
    own device, or an ONNX Runtime model) for contract squares, in batches (as many at once as
    the model has `lanes`); with `tta`, the logits are the mean over `tta_views`. The logits
    are the screening ones (N,), or with `every_output` all of them (N, outputs)."""
    if not squares:
        return np.zeros(0, dtype=np.float32), None
    starts = range(0, len(squares), batch_size)
    found, feats = [], []
    with progress_bar(transient=True, disable=not show) as bar:
        task = bar.add_task("predicting", total=len(squares))
        batches = (squares[i : i + batch_size] for i in starts)

        def run(batch: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
            return batch_outputs(model, contract, batch, tta, features)

        for out, f in lane_map(model, run, batches):
            found.append(out if every_output else out[:, 0])
            feats += [] if f is None else [f]
            bar.advance(task, len(out))
    return np.concatenate(found), np.concatenate(feats) if feats else None


def stream_logits(
    bundle: Bundle, paths: list[str], scoring: Scoring, batch_size: int = 4
) -> tuple[np.ndarray, np.ndarray, list[str | None], np.ndarray]:
    """Raw logits and OOD scores for image files, decoded (by `scoring.workers` threads) while
    the network runs, with `scoring.tta`'s test-time augmentation: (logits,
    NaN where unreadable; the guard's scores, NaN where unreadable or without a guard; per
    path None or the reason it could not be read; P(viral | pneumonia), NaN where unreadable
    or without a subtype head)."""
    raw = np.full(len(paths), np.nan, dtype=np.float32)
    ood = np.full(len(paths), np.nan)
    viral = np.full(len(paths), np.nan)
    errors: list[str | None] = [None] * len(paths)
    guarded = bundle.guard is not None

    def batches() -> Iterator[list[tuple[int, np.ndarray]]]:  # (row, square) of readable files
        batch: list[tuple[int, np.ndarray]] = []
        for i, square in enumerate(stream_squares(paths, bundle.contract, scoring.workers)):
            if isinstance(square, str):
                errors[i] = square
            else:
                batch.append((i, square))
            bar.advance(task)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def run(batch: list[tuple[int, np.ndarray]]) -> tuple[list[int], np.ndarray, np.ndarray]:
        squares = [square for _, square in batch]
        found, feats = batch_outputs(bundle.model, bundle.contract, squares, scoring.tta, guarded)
        return [i for i, _ in batch], found, guard_scores(bundle, feats, squares)

    with progress_bar(disable=not scoring.show) as bar:
        task = bar.add_task("predicting", total=len(paths))
        for rows, found, scores in lane_map(bundle.model, run, batches()):
            raw[rows], ood[rows] = found[:, 0], scores
            viral[rows] = subtype_probability(bundle, found)
    return raw, ood, errors, viral


OUT_OF_FOLD = "out-of-fold"
"""A threshold's `on` when it was fitted on cross-fitted scores (`train --folds`)."""


def check_operating_point(bundle: Bundle) -> bool:
    """Warn, naming the fix, when the bundle's threshold was not chosen on held-out data
    (validation, or out-of-fold scores) or the bundle records no validation results; True when
    all is in order."""
    tuned = bundle.meta.threshold.detail.get("on") in ("validation", OUT_OF_FOLD)
    if tuned and bundle.meta.validation:
        return True
    log.warning(
        "%s: %s; its labels use threshold %.4g (rule %s) as stored. Choose one on validation "
        "data with `pneumonia threshold %s --data MANIFEST --out NEW`",
        bundle.path,
        "records no validation results"
        if tuned
        else "the threshold was not chosen on held-out data",
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
    """P(PNEUMONIA) = sigmoid(logit / temperature), in float64 (stable for any logit)."""
    z = np.asarray(raw_logits, dtype=np.float64) / temperature
    return np.exp(-np.logaddexp(0.0, -z))


def predict_paths(
    bundle: Bundle,
    paths: list[str],
    batch_size: int = 4,
    workers: int | None = None,
    show: bool = True,
    tta: bool = False,
) -> list[Prediction]:
    """Predict every path; unreadable images get an error instead of a probability."""
    check_tta(bundle, tta)
    scoring = Scoring(workers, show, tta=tta)
    raw, ood, errors, viral = stream_logits(bundle, paths, scoring, batch_size)
    probs = np.full(len(paths), np.nan)
    readable = ~np.isnan(raw)
    probs[readable] = to_probability(raw[readable], bundle.temperature)
    results = []
    for path, prob, score, error, p_viral in zip(paths, probs, ood, errors, viral, strict=True):
        if error is not None:
            log.warning("%s: %s", path, error)
            results.append(Prediction(path, None, None, error))
        else:
            results.append(prediction(bundle, path, float(prob), float(score), float(p_viral)))
    return results


def predict_datasets(
    bundle: Bundle, items: Iterable[tuple[str, Any, str | None]], batch_size: int = 4,
    tta: bool = False,
) -> list[Prediction]:  # fmt: skip
    """Predict parsed DICOM datasets as they arrive ((name, dataset or None, why not or
    None), as `data.dicomweb.instances` yields them): decoded through the door, scored a
    batch at a time, each dataset dropped once its square is made."""
    check_tta(bundle, tta)
    results: list[Prediction] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        scored = score_squares(bundle, [sq for _, sq in pending], tta)
        for (row, _), (p, score, viral) in zip(pending, scored, strict=True):
            results[row] = prediction(
                bundle, results[row].path, float(p), float(score), float(viral)
            )
        pending.clear()

    for name, ds, why in items:
        if ds is not None:
            try:
                pending.append(
                    (len(results), bundle.contract.square(decode_dataset(ds, name).pixels))
                )
            except ImageError as exc:
                why = exc.reason
        if why is not None:
            log.warning("%s: %s", name, why)
        results.append(Prediction(name, None, None, why))
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return results


def prediction(
    bundle: Bundle, name: str, probability: float, ood_score: float, viral: float = np.nan
) -> Prediction:
    """The label at the bundle's threshold, the guard's verdict and, with a subtype head, the
    subtype (named where the label is PNEUMONIA) and P(viral | pneumonia) for one image, and
    whether the answer is borderline where the bundle records a band."""
    label = LABELS[1] if probability >= bundle.threshold else LABELS[0]
    extra: dict[str, Any] = {}
    if bundle.meta.borderline is not None:
        extra["borderline"] = bundle.meta.borderline.contains(probability, bundle.threshold)
    if bundle.meta.subtype is not None and not np.isnan(viral):
        extra["subtype_probability"] = viral
        if label == LABELS[1]:
            extra["subtype"] = SUBTYPES[int(viral >= bundle.meta.subtype.threshold)]
    if bundle.guard is not None and not np.isnan(ood_score):
        extra["in_distribution"] = bool(bundle.guard.in_distribution(np.array([ood_score]))[0])
        extra["ood_score"] = ood_score
    return Prediction(name, probability, label, **extra)


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
