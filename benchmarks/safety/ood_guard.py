"""Benchmark: the out-of-distribution guard's candidates, on the shipped model's features.

For each candidate (augmented training views the guard is fitted on, principal components
kept, validation flag budget) it reports what the guard flags:

- clean validation X-rays (the false-flag rate the threshold is set on);
- the validation X-rays under every realistic shift of `pneumonia stress` (original aspect
  ratios, crops, exposure, resolution, noise, text) - real X-rays a site might send, which
  should pass;
- each kind of the generated OOD corpus (noise, blank, gradients, textures, cartoons,
  documents, inverted and heavily cropped X-rays), which should be flagged;

and, as a baseline, the same budget on |logit| (a confident answer as "in distribution").

The adopt rule, applied by the script: among candidates that flag at least 95% of every
generated kind (noise ... document) and at least 90% of inverted and cropped X-rays, the one
with the lowest mean flag rate over the scored realistic shifts.

    python benchmarks/safety/ood_guard.py --manifest work/manifest.csv

needs the split manifest and its cache (`pneumonia data split ../shared/data/chest_xray`,
`pneumonia data prepare`) and prints a markdown table for docs/robustness.md.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from pneumonia.core.config import Config
from pneumonia.data.image_io import read_image
from pneumonia.data.ood_corpus import FROM_XRAYS, KINDS, MAKERS, ood_corpus
from pneumonia.data.shifts import SHIFTS, apply_shift
from pneumonia.inference.guard import Guard, fit_guard, flag_rates, set_threshold
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.datamodule import XrayDataModule
from pneumonia.training.guard_fit import dataset_outputs, image_outputs


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--cache", type=Path, default=Path("work/cache"))
    parser.add_argument("--bundle", default=None, help="default: the shipped model")
    parser.add_argument("--views", type=int, default=3, help="most augmented views to try")
    parser.add_argument("--per-kind", type=int, default=60, help="corpus images per kind")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    bundle = load_bundle(args.bundle, "auto")
    data = Config().data.model_copy(update={"manifest": args.manifest, "cache_dir": args.cache})
    dm = XrayDataModule(data, bundle.contract)
    dm.setup("fit")
    train = dm.dataset("train")
    labels = np.asarray(train.labels)
    val_logits, val_features = dataset_outputs(bundle.model, dm.dataset("val"))
    torch.manual_seed(42)
    views = [dataset_outputs(bundle.model, train)[1]]
    views += [
        dataset_outputs(bundle.model, dm.dataset("train", augment=True))[1]
        for _ in range(args.views)
    ]
    grays = [read_image(r.path)[1].pixels for r in dm.rows["val"]]
    names = [Path(r.path).name for r in dm.rows["val"]]
    shifted = {
        s: image_outputs(
            bundle, [apply_shift(s, g, 0, n) for g, n in zip(grays, names, strict=True)]
        )[1]
        for s in SHIFTS
    }
    corpus = ood_corpus(args.per_kind, grays[:200], seed=1)
    kinds = np.array([k for k, _ in corpus])
    corpus_logits, corpus_features = image_outputs(bundle, [im for _, im in corpus])
    print(f"features extracted in {time.perf_counter() - started:.0f} s\n")

    scored = [s for s in SHIFTS if SHIFTS[s].scored]
    header = [
        "views",
        "components",
        "budget",
        "val flagged",
        *KINDS,
        "shifts mean",
        "shifts max",
        "wide_1.5",
        "inverted view",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = []
    for n_views, components, budget in itertools.product(
        sorted({0, 1, args.views}), (64, 256, 0), (0.02, 0.01)
    ):
        guard = fit_guard(
            np.concatenate(views[: n_views + 1]), np.tile(labels, n_views + 1), components or 10**9
        )
        guard = set_threshold(guard, guard.scores(val_features), budget)
        rows.append(
            report(
                guard,
                n_views,
                components,
                budget,
                val_features,
                shifted,
                scored,
                corpus_features,
                kinds,
            )
        )
    baseline(val_logits, corpus_logits, kinds)
    rule = [
        r
        for r in rows
        if all(r[k] >= 0.95 for k in MAKERS) and all(r[k] >= 0.9 for k in FROM_XRAYS)
    ]
    best = min(rule, key=lambda r: r["shifts mean"]) if rule else None
    print(f"\nadopt rule picks: {best and {k: best[k] for k in ('views', 'components', 'budget')}}")
    if best:
        cells = ", ".join(f"{k[6:]} {v:.3f}" for k, v in best.items() if k.startswith("shift "))
        print(f"its flag rate per shift of the validation X-rays: {cells}")
    return rows


def report(
    guard: Guard,
    n_views: int,
    components: int,
    budget: float,
    val: np.ndarray,
    shifted: dict[str, np.ndarray],
    scored: list[str],
    corpus: np.ndarray,
    kinds: np.ndarray,
) -> dict[str, float]:
    corpus_scores = guard.scores(corpus)
    scores = {
        "val flagged": guard.scores(val),
        **{k: corpus_scores[kinds == k] for k in KINDS},
        **{f"shift {name}": guard.scores(f) for name, f in shifted.items()},
    }
    rates = {k: float(r["flagged"]) for k, r in flag_rates(guard, scores).items()}
    row: dict[str, float] = {
        "views": n_views,
        "components": components or val.shape[1],
        "budget": budget,
        "val flagged": rates["val flagged"],
        **{k: rates[k] for k in KINDS},
    }
    shift_flags = {name: rates[f"shift {name}"] for name in shifted}
    row["shifts mean"] = float(np.mean([shift_flags[s] for s in scored]))
    row["shifts max"] = max(shift_flags[s] for s in scored)
    row["wide_1.5"], row["inverted view"] = shift_flags["wide_1.5"], shift_flags["inverted"]
    line = "| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values())
    row.update({f"shift {s}": v for s, v in shift_flags.items()})
    print(line + " |")
    return row


def baseline(val_logits: np.ndarray, corpus_logits: np.ndarray, kinds: np.ndarray) -> None:
    """|logit| as the score (confident = in distribution), 2% of validation flagged."""
    limit = np.sort(np.abs(val_logits))[int(np.floor(0.02 * len(val_logits)))]
    flagged = np.abs(corpus_logits) < limit
    cells = ", ".join(f"{k} {flagged[kinds == k].mean():.2f}" for k in KINDS)
    print(f"\nbaseline |logit| at a 2% validation budget flags: {cells}")


if __name__ == "__main__":
    main()
