"""Judge threshold rules out of sample (issue 24's study, rule in configs/experiments/transfer).

    .venv/bin/python benchmarks/quality/threshold_rules.py STRESS_DIR --manifest work/manifest.csv \
        --audit work/audit/label_issues.csv [--halvings 200] [--json OUT.json]

STRESS_DIR holds `stress_logits.npz` from `pneumonia stress` on the validation split (every
view's raw logits). Each rule is fitted, temperature first, as `pneumonia.evaluation.operating` fits
it, on one patient-grouped half of validation and scored on the other half's audited labels
(the audit's flagged images left out), clean and under every scored shift; repeated over
random halvings. Also fits each rule on the whole of validation (what a bundle would store)
and says how many images decide it. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import beta

from pneumonia.core import LABELS
from pneumonia.core.config import OperatingConfig
from pneumonia.data.shifts import SHIFTS
from pneumonia.data.split import read_manifest
from pneumonia.evaluation.audit import read_issues
from pneumonia.evaluation.operating import fit_operating_point, rates
from pneumonia.inference.predictions import to_probability

FIT_VIEWS = ["wide_1.15", "wide_1.33", "crop_85", "zoom_out_80", "gamma_1.6", "down_96"]
"""The suite's mild levels a rule may be fitted on (as benchmarks/quality/robust_judge.py)."""
RULES = {
    "T0 clean (today)": (False, OperatingConfig(smooth=False)),
    "T1 audited": (True, OperatingConfig(smooth=False)),
    "T2 audited, smoothed": (True, OperatingConfig(smooth=True)),
    "T3 audited, smoothed, mild views": (True, OperatingConfig(smooth=True, views=FIT_VIEWS)),
}


def load_views(stress_dir: Path, manifest: Path, audit: Path) -> dict:
    """Labels, patients, audit flags and every view's logits of the stress run's images."""
    data = np.load(stress_dir / "stress_logits.npz")
    rows = [r for r in read_manifest(manifest) if r.split == "val"]
    by_path = {r.path: r for r in rows}
    paths = [str(p) for p in data["paths"]] if "paths" in data else [r.path for r in rows]
    kept = [by_path[p] for p in paths]
    flagged = read_issues(audit, kept)
    return {
        "names": [str(n) for n in data["names"]],
        "logits": np.asarray(data["logits"], dtype=np.float64),
        "labels": np.array([LABELS.index(r.label) for r in kept]),
        "patients": np.array([r.patient for r in kept]),
        "clean_label": np.array([(r.sha256, r.label) not in flagged for r in kept]),
    }


def fit_rule(
    v: dict, index: np.ndarray, audited: bool, cfg: OperatingConfig
) -> tuple[float, float]:
    """(threshold, temperature) of a rule fitted on the images `index` (boolean mask)."""
    mask = index & v["clean_label"] if audited else index
    names = v["names"]
    views = {n: v["logits"][names.index(n)][mask] for n in cfg.views}
    threshold, calibration, _ = fit_operating_point(
        v["labels"][mask], v["logits"][0][mask], cfg, views or None
    )
    return threshold.value, calibration.temperature if calibration else 1.0


def held_out(v: dict, index: np.ndarray, value: float, temperature: float) -> dict[str, float]:
    """Sensitivity and specificity on the audited labels of `index`: clean, and the mean
    over the scored shifts."""
    mask = index & v["clean_label"]
    labels = v["labels"][mask]
    scored = [i for i, n in enumerate(v["names"]) if n != "clean" and SHIFTS[n].scored]
    on = [
        rates(labels, to_probability(v["logits"][i][mask], temperature), value)
        for i in [0, *scored]
    ]
    return {
        "sens_clean": on[0]["sensitivity"],
        "spec_clean": on[0]["specificity"],
        "sens_shifts": float(np.mean([r["sensitivity"] for r in on[1:]])),
        "spec_shifts": float(np.mean([r["specificity"] for r in on[1:]])),
    }


def halves(patients: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random half of the patients, as a mask over images."""
    unique = np.unique(patients)
    chosen = set(rng.permutation(unique)[: len(unique) // 2].tolist())
    return np.array([p in chosen for p in patients])


def deciding_images(n_positives: int, target: float, smooth: bool) -> int:
    """How many order statistics of the positives decide the threshold: 2 for one order
    statistic (the score at the target's rank and the one below it); for the Harrell-Davis
    quantile, the fewest that carry 90% of its weight."""
    if not smooth:
        return 2
    p, n = 1 - target, n_positives
    edges = beta.cdf(np.arange(n + 1) / n, (n + 1) * p, (n + 1) * (1 - p))
    weights = np.sort(np.diff(edges))[::-1]
    return int(np.searchsorted(np.cumsum(weights), 0.9) + 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stress_dir", type=Path)
    parser.add_argument("--manifest", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--audit", type=Path, default=Path("work/audit/label_issues.csv"))
    parser.add_argument("--halvings", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    v = load_views(args.stress_dir, args.manifest, args.audit)
    rng = np.random.default_rng(args.seed)
    splits = [halves(v["patients"], rng) for _ in range(args.halvings)]
    every = np.ones(len(v["labels"]), dtype=bool)
    results = {}
    for name, (audited, cfg) in RULES.items():
        runs = []
        for half in splits:
            for fit, score in ((half, ~half), (~half, half)):
                value, temperature = fit_rule(v, fit, audited, cfg)
                runs.append({"threshold": value, **held_out(v, score, value, temperature)})
        value, temperature = fit_rule(v, every, audited, cfg)
        positives = int((v["labels"][every & v["clean_label"] if audited else every] == 1).sum())
        thresholds = np.array([r["threshold"] for r in runs])
        mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0] if k != "threshold"}
        results[name] = {
            "threshold_all_validation": value,
            "temperature": temperature,
            "positives": positives,
            "deciding_images": deciding_images(positives, cfg.target_sensitivity, cfg.smooth),
            "threshold_median": float(np.median(thresholds)),
            "threshold_iqr": float(np.subtract(*np.percentile(thresholds, [75, 25]))),
            **mean,
            "specificity": (mean["spec_clean"] + mean["spec_shifts"]) / 2,
            "qualifies": mean["sens_clean"] >= 0.985 and mean["sens_shifts"] >= 0.975,
        }
    fits = 2 * args.halvings
    print(
        f"{fits} held-out fits ({args.halvings} patient-grouped halvings, both ways); "
        f"{int((~v['clean_label']).sum())} validation images left out as audited label errors"
    )
    print(
        "\n| rule | threshold (all val) | deciding images | median (IQR) over halvings | "
        "sens clean | sens shifts | spec clean | spec shifts | qualifies |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['threshold_all_validation']:.4f} | {r['deciding_images']} of "
            f"{r['positives']} | {r['threshold_median']:.4f} ({r['threshold_iqr']:.4f}) | "
            f"{r['sens_clean']:.4f} | {r['sens_shifts']:.4f} | {r['spec_clean']:.4f} | "
            f"{r['spec_shifts']:.4f} | {'yes' if r['qualifies'] else 'no'} |"
        )
    winner = pick(results)
    print(f"\nwinner by the rule written before the runs: {winner}")
    if args.json:
        args.json.write_text(json.dumps({"rules": results, "winner": winner}, indent=2) + "\n")


def pick(results: dict[str, dict]) -> str:
    """The adopt rule: among qualifying rules the highest specificity; within 0.005 of it,
    the smallest threshold IQR. T0 when none qualifies."""
    qualified = {k: r for k, r in results.items() if r["qualifies"]}
    if not qualified:
        return "T0 clean (today)"
    best = max(r["specificity"] for r in qualified.values())
    close = {k: r for k, r in qualified.items() if r["specificity"] >= best - 0.005 - 1e-12}
    return min(close, key=lambda k: (close[k]["threshold_iqr"], -close[k]["specificity"]))


if __name__ == "__main__":
    main()
