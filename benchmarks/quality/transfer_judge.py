"""Judge the transfer study's contract and recipe (issue 24; rule in
configs/experiments/transfer/README.md, parts A and B).

    .venv/bin/python benchmarks/quality/transfer_judge.py \\
        pad=reports/transfer/pad/stress/stress.json \
        stretch_letterbox=... stretch_fill=... stretch_fill_clean=...

The first two are the same weights under the two contracts (part A); the rest are retrained
candidates under `stretch`, judged against `stretch_letterbox`, today's recipe (part B).
With `--round2`, the first is the `pad` incumbent and every other a stretch candidate judged
by round 2's rule. Prints a markdown table and the verdicts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from robust_judge import mean_auc

CLEAN = (0.9954, 0.9995)
ASPECT_VIEWS = ("wide_1.15", "wide_1.33", "wide_1.5", "tall_1.2")


def summary(rows: list[dict]) -> dict:
    """Clean ROC-AUC, mean suite ROC-AUC and the worst geometric change of one suite run."""
    geometric = [r for r in rows if r["group"] == "geometry"]
    worst = min(geometric, key=lambda r: r["delta_roc_auc"])
    aspect = [r for r in rows if r["shift"] in ASPECT_VIEWS]
    return {
        "clean": rows[0]["roc_auc"],
        "mean": mean_auc(rows),
        "worst_geo": (worst["shift"], worst["delta_roc_auc"]),
        "aspect_sens": min((r["sensitivity"] for r in aspect), default=float("nan")),
        "aspect_spec_drop": max(
            (rows[0]["specificity"] - r["specificity"] for r in aspect), default=float("nan")
        ),
    }


def part_a(pad: dict, stretch: dict) -> bool:
    """`stretch` replaces `pad` on the same weights: mean suite ROC-AUC not lower, worst
    geometric change smaller in size."""
    return stretch["mean"] >= pad["mean"] and abs(stretch["worst_geo"][1]) < abs(
        pad["worst_geo"][1]
    )


def part_b(candidate: dict, incumbent: dict) -> list[str]:
    """The parts of rule B a retrained candidate fails (empty: it passes)."""
    fails = []
    if not CLEAN[0] <= candidate["clean"] <= CLEAN[1]:
        fails.append("clean")
    if candidate["worst_geo"][1] < -0.005:
        fails.append("geometry")
    if candidate["mean"] < incumbent["mean"] + 0.001:
        fails.append("mean suite not +0.001")
    return fails


def round_2(candidate: dict, incumbent: dict) -> list[str]:
    """The parts of round 2's rule a stretch candidate fails against the `pad` incumbent."""
    fails = [f for f in part_b(candidate, incumbent) if f != "mean suite not +0.001"]
    if candidate["mean"] < incumbent["mean"] - 0.001:
        fails.append("mean suite below incumbent - 0.001")
    if not candidate["aspect_sens"] >= 0.98 or not candidate["aspect_spec_drop"] <= 0.03:
        fails.append("operating point on aspect views")
    return fails


def print_table(runs: dict[str, dict], verdicts: dict[str, str], aspect: bool) -> None:
    """One markdown row per run: ranking, worst geometric change, (aspect views,) verdict."""
    extra = " aspect views: min sens, largest spec drop |" if aspect else ""
    print(f"| candidate | clean ROC-AUC | mean suite ROC-AUC | worst geometric change |{extra} "
          "verdict |")  # fmt: skip
    print("|---|---:|---:|---|" + ("---|" if aspect else "") + "---|")
    for name, r in runs.items():
        geo = r["worst_geo"]
        cells = f" {r['aspect_sens']:.3f}, {r['aspect_spec_drop']:+.3f} |" if aspect else ""
        print(f"| {name} | {r['clean']:.4f} | {r['mean']:.4f} | {geo[1]:+.4f} ({geo[0]}) |"
              f"{cells} {verdicts[name]} |")  # fmt: skip


def main_round_2(runs: dict[str, dict]) -> str:
    """Round 2: each stretch candidate against the first run (the incumbent, `pad`)."""
    names = list(runs)
    verdicts, passing = {names[0]: "incumbent"}, {}
    for name in names[1:]:
        fails = round_2(runs[name], runs[names[0]])
        verdicts[name] = "passes" if not fails else "fails (" + ", ".join(fails) + ")"
        if not fails:
            passing[name] = runs[name]["mean"]
    print_table(runs, verdicts, aspect=True)
    winner = max(passing, key=passing.get) if passing else names[0]
    print(f"\nround 2 winner: {winner}")
    return winner


def main(argv: list[str] | None = None) -> str:
    args = list(argv if argv is not None else sys.argv[1:])
    runs = {}
    for arg in (a for a in args if a != "--round2"):
        name, _, path = arg.partition("=")
        runs[name] = summary(json.loads(Path(path).read_text())["shifts"])
    if "--round2" in args:
        return main_round_2(runs)
    names = list(runs)
    adopt_stretch = part_a(runs[names[0]], runs[names[1]])
    verdicts = {
        names[0]: "incumbent contract",
        names[1]: f"part A: {'adopt' if adopt_stretch else 'keep pad'}",
    }
    passing = {}
    for name in names[2:]:
        fails = part_b(runs[name], runs[names[1]])
        verdicts[name] = "part B: " + ("passes" if not fails else f"fails ({', '.join(fails)})")
        if not fails:
            passing[name] = runs[name]["mean"]
    print_table(runs, verdicts, aspect=False)
    recipe = max(passing, key=passing.get) if passing else names[1]
    print(f"\ncontract: {'stretch' if adopt_stretch else 'pad'}; recipe: {recipe}")
    return recipe


if __name__ == "__main__":
    main()
