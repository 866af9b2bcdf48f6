"""Fitting a bundle's out-of-distribution guard, and the monitoring reference, from its data.

Training runs this after the bundle is written; `pneumonia guard BUNDLE` runs it on a bundle
made before the guard existed. The guard is fitted on the pooled features of every training
image, clean and in `augmented_views` copies under the training augmentation (the inputs the
model learned from: fitted on clean squares alone it flags most original-aspect X-rays), and
its threshold is set on the clean validation split. The detection rate on a generated OOD
corpus (`pneumonia.data.ood_corpus`) and the validation flag rate are measured and recorded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from pneumonia.core.bundle import ONNX, file_record, read_meta, verify_file, write_meta
from pneumonia.core.config import Config, GuardConfig
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.meta import GuardRecord
from pneumonia.core.preprocess import Preprocessing, square_stats
from pneumonia.data.ood_corpus import cropped, ood_corpus
from pneumonia.inference.guard import (
    GUARD,
    LAYOUT_GRID,
    METHOD,
    Guard,
    Layout,
    fit_guard,
    flag_rates,
    save_guard,
    set_threshold,
    thumbnails,
    top_threshold,
)
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import network_scores, to_probability
from pneumonia.inference.runtime import OnnxModel, lane_map, lanes, network_outputs
from pneumonia.modeling.datamodule import CachedImages, XrayDataModule

log = logging.getLogger(__name__)


def dataset_outputs(
    model: Any, ds: CachedImages, thumbs: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(raw logits, pooled features) of `model` (PyTorch, or ONNX with a features output) for
    every item of a cached dataset: batches are loaded (and augmented) while the network runs
    on the ones before, one call per lane. With `thumbs`, the layout check's thumbnails of
    the inputs are appended to it, a batch at a time."""
    logits, features = [], []
    c = ds.contract

    def loaded(x: np.ndarray) -> np.ndarray:
        if thumbs is not None:  # the input back on the 0..255 scale of the contract's squares
            thumbs.append(thumbnails(np.clip((x[:, 0] * c.std + c.mean) * 255, 0, 255)))
        return x

    batches = (loaded(x.numpy()) for x, *_ in DataLoader(ds, batch_size=64))
    threads = torch.get_num_threads()
    if lanes(model) > 1:  # the lanes take the cores: augmenting on one thread, not fighting them
        torch.set_num_threads(1)  # (guard fit 67 s against 117 s, docs/benchmarks.md)
    try:
        for found, feats in lane_map(model, lambda x: network_outputs(model, x), batches):
            if feats is None:
                raise ValueError("the network gives no features; export its ONNX model again")
            logits.append(found)
            features.append(feats)
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(logits), np.concatenate(features)


def image_outputs(bundle: Bundle, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(raw logits, pooled features) of the bundle's network for decoded 2-D uint8 images,
    each put through its contract, in batches of 64 (one per lane at once)."""
    return square_outputs(bundle, [bundle.contract.square(img) for img in images])


def square_outputs(bundle: Bundle, squares: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(raw logits, pooled features) of the bundle's network for contract squares."""
    found, features = network_scores(bundle.model, bundle.contract, squares, 64, features=True)
    if features is None:
        raise ValueError("the network gives no features; export its ONNX model again")
    return found, features


def corpus_detection(bundle: Bundle, guard: Guard, xrays: list[np.ndarray]) -> dict[str, Any]:
    """Share of each kind of the generated OOD corpus the guard flags (30 images a kind)."""
    corpus = ood_corpus(30, xrays, seed=0)
    squares = [bundle.contract.square(img) for _, img in corpus]
    scores = guard.scores(square_outputs(bundle, squares)[1], squares)
    kinds = np.array([k for k, _ in corpus])
    rates = flag_rates(guard, {str(k): scores[kinds == k] for k in dict.fromkeys(kinds)})
    return {k: round(float(r["flagged"]), 4) for k, r in rates.items()}


def rendered(dm: XrayDataModule) -> XrayDataModule:
    """`dm`'s rows with its augmentation, every augmented image also rendered again
    (`data.augment.render_p` 1)."""
    augment = dm.cfg.augment.model_copy(update={"render_p": 1.0})
    views = XrayDataModule(dm.cfg.model_copy(update={"augment": augment}), dm.contract)
    views.rows = dm.rows
    return views


def add_guard(bundle: Bundle, dm: XrayDataModule, cfg: GuardConfig, seed: int = 0) -> GuardRecord:
    """Fit the guard for a bundle (its PyTorch network, or its ONNX model with features:
    about four times faster on a CPU) on `dm`'s splits, write `guard.safetensors` and the
    monitoring reference into the bundle, and return what `model.json` now records."""
    started = time.perf_counter()
    model = bundle.model
    train = dm.dataset("train")
    labels = np.asarray(train.labels)
    thumbs: list[np.ndarray] = []
    parts = [dataset_outputs(model, train, thumbs)[1]]
    torch.manual_seed(seed)
    views = rendered(dm) if cfg.rendered_views else dm
    for _ in range(cfg.augmented_views):
        parts.append(dataset_outputs(model, views.dataset("train", augment=True), thumbs)[1])
    guard = fit_guard(np.concatenate(parts), np.tile(labels, len(parts)), cfg.components or 10**9)
    val = dm.dataset("val")
    val_logits, val_features = dataset_outputs(model, val)
    val_squares = np.stack([np.load(p) for p in val.paths])
    layout_record = None
    if cfg.layout:
        squares = np.stack([np.load(p) for p in train.paths])
        layout, layout_record = fit_layout(
            np.concatenate(thumbs), squares, bundle.contract, val_squares, cfg, seed
        )
        guard = replace(guard, layout=layout)
    in_frame = np.ones(len(val_squares), dtype=bool)  # not flagged by the layout check
    if guard.layout is not None:
        in_frame = guard.layout.logits(val_squares) <= guard.layout.threshold
    distances = guard.distances(val_features[in_frame])
    guard = set_threshold(guard, distances, cfg.max_flag_rate, int((~in_frame).sum()))
    val_scores = guard.scores(val_features, list(val_squares))
    detection = corpus_detection(bundle, guard, list(val_squares[:60]))
    record = GuardRecord(
        method=METHOD,
        file=GUARD,
        threshold=guard.threshold,
        components=guard.projection.shape[1],
        features=guard.projection.shape[0],
        max_flag_rate=cfg.max_flag_rate,
        fitted_on={
            "train_images": len(labels),
            "augmented_views": cfg.augmented_views,
            "rendered_views": cfg.rendered_views,
        },
        validation={
            "images": len(val_scores),
            "flagged": round(float(np.mean(val_scores > guard.threshold)), 4),
            "corpus_flagged": detection,
        },
        layout=layout_record,
    )
    path = save_guard(guard, bundle.path / GUARD)
    reference = {
        "split": "val",  # answers and guard scores: validation (training's are optimistic)
        "inputs": "train",  # input statistics: the training squares
        "train_prevalence": float(np.mean(labels)),
        "probability": _rounded(to_probability(val_logits, bundle.temperature)),
        "label": [int(y) for y in val.labels],  # the site curve's class-conditional rates
        "ood_score": _rounded(val_scores),
        **{k: _rounded(v, 4) for k, v in training_stats(train).items()},
    }
    meta = bundle.meta.model_copy(
        update={
            "guard": record,
            "reference": reference,
            "files": {**bundle.meta.files, GUARD: file_record(path)},
        }
    )
    write_meta(meta, bundle.path)
    log.info(
        "guard fitted in %.0f s on the %s backend: threshold %.3g, %.1f%% of validation flagged",
        time.perf_counter() - started,
        bundle.backend,
        guard.threshold,
        100 * record.validation["flagged"],
    )
    return record


def layout_from(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, max_iter: int = 2000
) -> Layout:
    """A layout check (threshold 0, set later) from thumbnails `x` and labels `y` (1: not a
    whole film): a logistic regression on the standardised thumbnails."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(0), x.std(0) + 1e-6
    fitted = LogisticRegression(C=0.1, max_iter=max_iter).fit((x - mean) / scale, y, weights)
    return Layout(mean, scale, fitted.coef_[0].astype(np.float32), float(fitted.intercept_[0]), 0)


def fit_layout(
    thumbs: np.ndarray,
    squares: np.ndarray,
    contract: Preprocessing,
    val_squares: np.ndarray,
    cfg: GuardConfig,
    seed: int = 0,
) -> tuple[Layout, dict[str, Any]]:
    """The layout check and its record: a logistic regression telling the training inputs'
    thumbnails (`thumbs`: clean and augmented views) from their negatives and from a small
    piece of each training square (`ood_corpus.cropped`, put through the contract); its
    threshold flags at most half of `max_flag_rate` of the validation squares."""
    rng = np.random.default_rng(seed)
    pieces = thumbnails([contract.square(cropped(sq, rng)) for sq in squares])
    x = np.concatenate([thumbs, 1 - thumbs, pieces])  # a thumbnail's negative: 1 - thumbnail
    y = np.repeat([0, 1, 1], [len(thumbs), len(thumbs), len(pieces)])
    layout = layout_from(x, y)
    val_logits = layout.logits(val_squares)
    allowed = int(np.floor(cfg.max_flag_rate / 2 * len(val_logits)))
    layout = replace(layout, threshold=top_threshold(val_logits, allowed))
    record = {
        "method": f"logistic regression on {LAYOUT_GRID}x{LAYOUT_GRID} thumbnails of the "
        "contract square: a whole frontal X-ray the right way round, or its negative or a "
        "small piece of it",
        "threshold": layout.threshold,
        "fitted_on": {"views": len(thumbs), "negatives": len(thumbs), "pieces": len(pieces)},
        "validation_flagged": round(float(np.mean(val_logits > layout.threshold)), 4),
    }
    return layout, record


def training_stats(train: CachedImages, chunk: int = 512) -> dict[str, np.ndarray]:
    """`square_stats` of every training square, read from the cache a chunk at a time."""
    parts = [
        square_stats(np.stack([np.load(p) for p in train.paths[i : i + chunk]]))
        for i in range(0, len(train.paths), chunk)
    ]
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def _rounded(values: np.ndarray, digits: int = 6) -> list[float]:
    return [round(float(v), digits) for v in values]


def guard_bundle(
    folder: Path, manifest: Path | None, cfg: GuardConfig, force: bool = False
) -> GuardRecord:
    """`pneumonia guard`: fit and store the guard of an existing bundle on the data it was
    trained on (its recorded manifest, cache and augmentation; `manifest` instead if given).
    An ONNX model without the features output is exported again first (it is then used
    for the fit, which is faster than PyTorch on a CPU)."""
    from pneumonia.modeling.export import export_onnx

    folder, meta = read_meta(folder)
    if meta.guard is not None and not force:
        raise PneumoniaError(f"{folder}: already has a guard; pass --force to fit it again")
    data = Config.model_validate(meta.training.get("config", {})).data
    if manifest is not None:
        data = data.model_copy(update={"manifest": manifest})
    if not Path(data.manifest).is_file():
        raise PneumoniaError(
            f"{data.manifest}: the manifest this bundle was trained on is not here; pass "
            "--data MANIFEST (made by `pneumonia data split`, cached by `data prepare`)"
        )
    if ONNX in meta.files and not OnnxModel(verify_file(folder, meta, ONNX)).has_features:
        log.info("%s: exporting model.onnx again, with the features output the guard reads", folder)
        export_onnx(load_bundle(folder, "torch"), force=True)
    bundle = load_bundle(folder, "onnx" if ONNX in meta.files else "torch")
    dm = XrayDataModule(data, bundle.contract)
    dm.setup("fit")
    seed = int(meta.training.get("config", {}).get("train", {}).get("seed", 0))
    return add_guard(bundle, dm, cfg, seed)
