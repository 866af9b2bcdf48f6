"""How much bacterial-against-viral signal a network's pooled features hold: a linear probe.

    .venv/bin/python benchmarks/quality/subtype_probe.py --bundle src/pneumonia/assets/default
    .venv/bin/python benchmarks/quality/subtype_probe.py --model efficientnet_lite2 --size 260

Reads the manifest's PNEUMONIA images whose names give the subtype from the cache of the
network's preprocessing (`pneumonia data prepare preprocess.image_size=SIZE` first), takes the
pooled features (a bundle's own, or an ImageNet-pretrained network's from local weights) and
fits a standardised logistic regression for P(viral). Two readings:

- `val`: fitted on the training split, scored on the validation split (95% interval
  resampling patients), as the subtype head is judged;
- `oof`: grouped 5-fold cross-fitting over training and validation together (no patient in
  two folds), so every image with a subtype gets one out-of-fold score (~3,900 images
  instead of validation's 388; interval resampling patients).

A manifest's test split, where it has one, is never read.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from pneumonia.core.preprocess import Preprocessing
from pneumonia.data.cache import cache_dir_for
from pneumonia.data.split import read_manifest
from pneumonia.evaluation.uncertainty import bootstrap
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.classifier import safe_auc
from pneumonia.modeling.datamodule import CachedImages, subtype_codes
from pneumonia.modeling.models import create_model
from pneumonia.training.guard_fit import dataset_outputs

log = logging.getLogger("subtype_probe")


def pretrained_features(name: str, ds: CachedImages) -> np.ndarray:
    """Pooled features of an ImageNet-pretrained registered model (local weights only)."""
    net = create_model(name, pretrained=True, in_chans=1).eval()
    out = []
    with torch.inference_mode():
        for x, *_ in DataLoader(ds, batch_size=64):
            out.append(net.forward_head(net.forward_features(x), pre_logits=True).numpy())
    return np.concatenate(out)


def probe(c: float) -> Pipeline:
    """The probe: standardised features, L2 logistic regression of strength 1/c."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))


def auc_interval(y: np.ndarray, p: np.ndarray, groups: list[str]) -> dict[str, Any]:
    """ROC-AUC and its 95% interval resampling patients."""
    ci = bootstrap(y, p, lambda a, b: {"auc": safe_auc(a, b)}, groups, n_boot=1000)
    return {"n": len(y), "viral": int(y.sum()), "roc_auc": roc_auc_score(y, p), "ci": ci["auc"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the probe (see the module); returns what it prints."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="a bundle's")
    ap.add_argument("--model")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--manifest", default="work/manifest.csv")
    ap.add_argument("--cache", default="work/cache")
    ap.add_argument("--c", type=float, default=0.01, help="inverse L2 strength of the probe")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if (args.bundle is None) == (args.model is None):
        ap.error("give one of --bundle BUNDLE or --model NAME")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rows = [r for r in read_manifest(args.manifest) if r.split in ("train", "val")]  # never test
    codes = np.array(subtype_codes(rows))
    rows = [r for r, c in zip(rows, codes, strict=True) if c >= 0]
    y = codes[codes >= 0]
    if args.bundle is not None:
        bundle = load_bundle(args.bundle, backend=args.backend)
        contract, name = bundle.meta.preprocessing, str(args.bundle)
    else:
        contract, name = Preprocessing(image_size=args.size), f"{args.model}@{args.size}"
    ds = CachedImages(rows, cache_dir_for(args.cache, contract), contract)
    start = time.perf_counter()
    if args.bundle is not None:
        feats = dataset_outputs(bundle.model, ds)[1]
    else:
        feats = pretrained_features(args.model, ds)
    log.info(
        "%s: %d images, %d features in %.0f s", name, *feats.shape, time.perf_counter() - start
    )

    patients = [r.patient for r in rows]
    train = np.array([r.split == "train" for r in rows])
    fitted = probe(args.c).fit(feats[train], y[train])
    p_val = fitted.predict_proba(feats[~train])[:, 1]
    result: dict[str, Any] = {"features": name, "c": args.c}
    val_patients = [p for p, t in zip(patients, train, strict=True) if not t]
    result["val"] = auc_interval(y[~train], p_val, val_patients)
    oof = np.zeros(len(y))
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    for fit_idx, out_idx in folds.split(feats, y, patients):
        oof[out_idx] = (
            probe(args.c).fit(feats[fit_idx], y[fit_idx]).predict_proba(feats[out_idx])[:, 1]
        )
    result["oof"] = auc_interval(y, oof, patients)
    print(json.dumps(result, indent=1, default=float))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
