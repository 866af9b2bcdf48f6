"""Site adaptation without labels on simulated sites (issue 24; rule in
configs/experiments/transfer/README.md).

    .venv/bin/python benchmarks/quality/site_adaptation.py STRESS_DIR --bundle BUNDLE \
        [--manifest work/manifest.csv] [--audit work/audit/label_issues.csv] \
        [--sites 50] [--size 400] [--boot 200] [--json OUT.json]

A simulated site is one view of validation (clean, or a scored shift of `pneumonia stress`,
whose `stress_logits.npz` STRESS_DIR holds) resampled with replacement to a prevalence of 0.3,
0.5 or 0.62 from the audited labels. For each site: sensitivity and specificity at the
bundle's stored threshold (before), and at the threshold `pneumonia threshold --unlabelled`
would store (after: the point estimate, and the bootstrap 5th percentile). Prints markdown
tables: per view (over the prevalences) and per prevalence (over the views).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from threshold_rules import load_views

from pneumonia.data.shifts import SHIFTS
from pneumonia.evaluation.site import anchored_aim, site_thresholds
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import to_probability

PREVALENCES = (0.3, 0.5, 0.62)
KEYS = ("before", "point", "p05", "anchored", "anchored_p05")
"""Thresholds compared: stored; adapted to the target (point, bootstrap 5th percentile);
adapted to the anchored target (the stored threshold's expected sensitivity on validation)."""


def simulate(
    probs: np.ndarray, labels: np.ndarray, prevalence: float, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of one site: `size` images drawn with replacement at
    `prevalence`."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = round(size * prevalence)
    chosen = np.concatenate([rng.choice(pos, n_pos), rng.choice(neg, size - n_pos)])
    return probs[chosen], labels[chosen]


def adapted(
    probs: np.ndarray, old: float, target: float, boot: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(estimated prevalence, point threshold, bootstrap 5th-percentile threshold)."""
    prior, value, _ = site_thresholds(probs[None], old, target)
    draws = probs[rng.integers(0, len(probs), (boot, len(probs)))]
    low = np.quantile(site_thresholds(draws, old, target)[1], 0.05)
    return float(prior[0]), float(value[0]), float(low)


def rates(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    pred = probs >= threshold
    return float(pred[labels == 1].mean()), float((~pred[labels == 0]).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stress_dir", type=Path)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--audit", type=Path, default=Path("work/audit/label_issues.csv"))
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    bundle = load_bundle(args.bundle, "auto")
    meta = bundle.meta
    stored = meta.threshold.value
    temperature = meta.calibration.temperature if meta.calibration else 1.0
    old = meta.validation["positives"] / meta.validation["n"]
    target = float(meta.threshold.detail.get("target_sensitivity", 0.99))
    anchor, bias, _ = anchored_aim(bundle, target)
    print(f"anchored aim: {anchor:.4f} (the estimator's bias on validation: {bias:+.4f})")
    v = load_views(args.stress_dir, args.manifest, args.audit)
    keep = v["clean_label"]
    labels = v["labels"][keep]
    names = [n for n in v["names"] if n == "clean" or SHIFTS[n].scored]
    rng = np.random.default_rng(args.seed)
    cells = []
    for name in names:
        probs = to_probability(v["logits"][v["names"].index(name)][keep], temperature)
        for prevalence in PREVALENCES:
            runs = []
            for _ in range(args.sites):
                p, y = simulate(probs, labels, prevalence, args.size, rng)
                prior, point, low = adapted(p, old, target, args.boot, rng)
                _, a_point, a_low = adapted(p, old, anchor, args.boot, rng)
                values = (stored, point, low, a_point, a_low)
                runs.append([prior, *(x for t in values for x in rates(p, y, t))])
            mean = np.mean(runs, axis=0)
            cells.append({"view": name, "prevalence": prevalence, "estimate": mean[0]})
            for i, key in enumerate(KEYS):
                cells[-1][key] = mean[1 + 2 * i : 3 + 2 * i].tolist()
            print(f"{name} {prevalence}: estimate {mean[0]:.3f}; {_means([cells[-1]])}", flush=True)
    print_tables(cells, stored, target, args)
    if args.json:
        result = {"cells": cells, "anchor": anchor, "verdict": verdict(cells),
                  "verdict_anchored": verdict(cells, ("anchored", "anchored_p05"))}  # fmt: skip
        args.json.write_text(json.dumps(result, indent=2))


def verdict(cells: list[dict], keys: tuple[str, str] = ("point", "p05")) -> str:
    """The adopt rule written before the runs (part 3; `keys` anchored: its round 2)."""
    for key in keys:
        sens = [c[key][0] for c in cells]
        if np.mean(sens) >= 0.98 and min(sens) >= 0.95:
            return key
    return f"{keys[0]}, with a warning"


def _means(rows: list[dict]) -> str:
    """Mean sensitivity and specificity of every column, as table cells."""
    values = [np.mean([c[key][i] for c in rows]) for key in KEYS for i in (0, 1)]
    return " | ".join(f"{x:.3f}" for x in values)


def print_tables(cells: list[dict], stored: float, target: float, args: argparse.Namespace) -> None:
    print(
        f"\n{args.sites} sites of {args.size} images per cell; stored threshold {stored:.4g}; "
        f"target sensitivity {target}; {args.boot} bootstrap draws for the 5th percentile\n"
    )
    columns = " | ".join(f"sens {k} | spec {k}" for k in KEYS)
    print(f"| prevalence | estimated | {columns} |")
    print("|---:|---:|" + "---:|" * 2 * len(KEYS))
    for prevalence in PREVALENCES:
        rows = [c for c in cells if c["prevalence"] == prevalence]
        est = np.mean([c["estimate"] for c in rows])
        print(f"| {prevalence} | {est:.3f} | {_means(rows)} |")
    print(f"\n| view | {columns} |")
    print("|---|" + "---:|" * 2 * len(KEYS))
    for name in dict.fromkeys(c["view"] for c in cells):
        rows = [c for c in cells if c["view"] == name]
        print(f"| {name} | {_means(rows)} |")
    print(f"\nverdict by the rule written before the runs: {verdict(cells)}")
    print(f"anchored (round 2): {verdict(cells, ('anchored', 'anchored_p05'))}")


if __name__ == "__main__":
    main()
