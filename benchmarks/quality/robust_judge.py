"""Judge the robustness study (issue 11) by the adopt rule written before the runs.

    .venv/bin/python benchmarks/quality/robust_judge.py STUDY_DIR [--clean-low L --clean-high H]
        [--also NAME=stress_logits.npz ...] [--ensemble NAME=CAND+CAND ...]

STUDY_DIR is what benchmarks/quality/robust_study.py wrote (study.json and <candidate>/stress/).
The rule: every geometric shift within 0.005 ROC-AUC of clean; sensitivity at the stored
threshold >= 0.98 on every scored shift; clean ROC-AUC inside today's model's 95% interval.
Also re-chooses each candidate's threshold with the view rules of `pneumonia.evaluation.operating`
(fitted on the suite's mild levels) and reports sensitivity/specificity on every level.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pneumonia.core.config import OperatingConfig
from pneumonia.data.shifts import SHIFTS
from pneumonia.evaluation.operating import choose_over_views, fit_operating_point, rates
from pneumonia.evaluation.stress import shift_row
from pneumonia.inference.predictions import to_probability

FIT_VIEWS = ["wide_1.15", "wide_1.33", "crop_85", "zoom_out_80", "gamma_1.6", "down_96"]
"""Mild levels a threshold may be fitted on; the other shifts judge it."""


def judge(rows: list[dict], low: float, high: float) -> dict:
    """The adopt rule's three parts for one candidate's stress rows."""
    clean = rows[0]
    geometric = [r for r in rows if r["group"] == "geometry"]
    scored = [r for r in rows[1:] if r["scored"]]
    worst_geo = min(geometric, key=lambda r: r["delta_roc_auc"])
    worst_sens = min(scored, key=lambda r: r["sensitivity"])
    return {
        "clean_auc": clean["roc_auc"],
        "clean_ok": low <= clean["roc_auc"] <= high,
        "worst_geo": (worst_geo["shift"], worst_geo["delta_roc_auc"]),
        "geo_ok": worst_geo["delta_roc_auc"] >= -0.005,
        "worst_sens": (worst_sens["shift"], worst_sens["sensitivity"]),
        "sens_ok": worst_sens["sensitivity"] >= 0.98,
        "mean_spec": float(np.mean([r["specificity"] for r in scored])),
    }


def view_rules(npz: Path) -> list[tuple[str, float, float, float, float]]:
    """(rule, threshold, clean spec, min sens over scored shifts, mean spec) per view rule."""
    data = np.load(npz)
    names = [str(n) for n in data["names"]]
    labels, temperature = data["labels"], float(data["temperature"])
    probs = {n: to_probability(z, temperature) for n, z in zip(names, data["logits"], strict=True)}
    scored = [n for n in names[1:] if SHIFTS[n].scored]
    rules = {
        "clean (today)": OperatingConfig(calibrate=False, smooth=False),
        "clean, smoothed": OperatingConfig(calibrate=False, smooth=True),
        "mild views, pooled": OperatingConfig(calibrate=False, views=FIT_VIEWS, smooth=False),
        "mild views, pooled, smoothed": OperatingConfig(
            calibrate=False, views=FIT_VIEWS, smooth=True
        ),
        "mild views, worst": OperatingConfig(
            calibrate=False, views=FIT_VIEWS, pool="worst", smooth=False
        ),
    }
    out = []
    for label, cfg in rules.items():
        views = {"clean": probs["clean"], **{v: probs[v] for v in cfg.views}}
        value, _ = choose_over_views(labels, views, cfg)
        on = {n: rates(labels, probs[n], value) for n in names}
        min_sens = min(on[n]["sensitivity"] for n in scored)
        mean_spec = float(np.mean([on[n]["specificity"] for n in scored]))
        out.append((label, value, on["clean"]["specificity"], min_sens, mean_spec))
    return out


def ensemble_record(study: Path, name: str, members: list[str]) -> dict:
    """A study record for the mean of the members' calibrated suite logits, with the target
    sensitivity rule (0.99, after temperature scaling) fitted on its clean view, as
    `pneumonia ensemble` did until 2026-12-02 (one order statistic, not smoothed); written to
    STUDY/NAME/stress/ like a trained candidate's."""
    data = [np.load(study / m / "stress" / "stress_logits.npz") for m in members]
    labels, names = data[0]["labels"], [str(n) for n in data[0]["names"]]
    for d in data[1:]:
        if not np.array_equal(d["labels"], labels) or [str(n) for n in d["names"]] != names:
            raise SystemExit(f"{name}: members were not scored on the same views")
    z = np.mean([d["logits"] / float(d["temperature"]) for d in data], axis=0)
    threshold, calibration, _ = fit_operating_point(labels, z[0], OperatingConfig(smooth=False))
    t = calibration.temperature if calibration else 1.0
    patients = [str(p) for p in data[0]["patients"]]
    rows = [
        shift_row(n, labels, to_probability(zv, t), threshold.value, patients, 0)
        for n, zv in zip(names, z, strict=True)
    ]
    for r in rows:
        for key in ("roc_auc", "sensitivity", "specificity"):
            r[f"delta_{key}"] = r[key] - rows[0][key]
    out = study / name / "stress"
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "stress_logits.npz",
        names=np.array(names),
        logits=z,
        labels=labels,
        patients=np.array(patients),
        temperature=t,
        threshold=threshold.value,
    )
    duration = sum(
        r["duration_s"]
        for r in json.loads((study / "study.json").read_text())
        if r["name"] in members
    )
    return {"name": name, "duration_s": duration, "threshold": threshold.value, "stress": rows}


def mean_auc(rows: list[dict]) -> float:
    """Mean ROC-AUC over the clean view and every scored shift (the ranking of issue 12)."""
    kept = [r for r in rows if r["shift"] == "clean" or r["scored"]]
    return float(np.mean([r["roc_auc"] for r in kept]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--clean-low", type=float, default=0.9954)
    parser.add_argument("--clean-high", type=float, default=0.9995)
    parser.add_argument(
        "--also", action="append", default=[], help="NAME=stress_logits.npz of another model"
    )
    parser.add_argument(
        "--ensemble",
        action="append",
        default=[],
        help="NAME=CANDIDATE+CANDIDATE[+...]: judge the mean of their calibrated logits too",
    )
    args = parser.parse_args()
    records = json.loads((args.study / "study.json").read_text())
    for spec in args.ensemble:
        name, members = spec.split("=", 1)
        records.append(ensemble_record(args.study, name, members.split("+")))
    print(
        "| candidate | train s | clean AUC | worst geometric dAUC | min sens (shift) "
        "| mean spec | mean AUC, clean + scored shifts | adopt |"
    )
    print("|---|---:|---:|---|---|---:|---:|---|")
    for r in records:
        j = judge(r["stress"], args.clean_low, args.clean_high)
        fails = [k for k in ("clean_ok", "geo_ok", "sens_ok") if not j[k]]
        verdict = "yes" if not fails else "no: " + ", ".join(f.removesuffix("_ok") for f in fails)
        geo, sens = j["worst_geo"], j["worst_sens"]
        print(
            f"| {r['name']} | {r['duration_s']:.0f} | {j['clean_auc']:.4f} | "
            f"{geo[1]:+.4f} ({geo[0]}) | {sens[1]:.3f} ({sens[0]}) | {j['mean_spec']:.3f} | "
            f"{mean_auc(r['stress']):.4f} | {verdict} |"
        )
    print(
        "\n| candidate | threshold rule | threshold | clean spec | min sens, scored shifts "
        "| mean spec, scored shifts |"
    )
    print("|---|---|---:|---:|---:|---:|")
    npzs = [(r["name"], args.study / r["name"] / "stress" / "stress_logits.npz") for r in records]
    npzs += [(a.split("=", 1)[0], Path(a.split("=", 1)[1])) for a in args.also]
    for name, npz in npzs:
        for label, value, spec, min_sens, mean_spec in view_rules(npz):
            print(
                f"| {name} | {label} | {value:.4f} | {spec:.3f} | {min_sens:.3f} "
                f"| {mean_spec:.3f} |"
            )


if __name__ == "__main__":
    main()
