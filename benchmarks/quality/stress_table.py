"""Side-by-side markdown table of shift-suite results (`pneumonia stress` JSON files).

    .venv/bin/python benchmarks/quality/stress_table.py NAME=path/stress.json \\
        [NAME=path/stress.json ...]

Per shift and model: ROC-AUC (change from clean) and sensitivity / specificity at that model's
stored threshold. Then one line per model with what the adopt rules read: clean ROC-AUC, the
mean ROC-AUC over the clean view and every scored shift, the worst change of a geometric
shift, and the lowest sensitivity on a scored shift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    runs = {}
    for arg in sys.argv[1:]:
        name, _, path = arg.partition("=")
        runs[name] = json.loads(Path(path).read_text())
    header = "| shift | " + " | ".join(f"{n}: AUC (change) | sens / spec" for n in runs) + " |"
    print(header)
    print("|---|" + "---:|---:|" * len(runs))
    first = next(iter(runs.values()))
    for i, row in enumerate(first["shifts"]):
        name = row["shift"] + ("" if row["scored"] else " (to refuse)")
        cells = []
        for result in runs.values():
            r = result["shifts"][i]
            assert r["shift"] == row["shift"], "the runs must cover the same shifts"
            cells.append(f"{r['roc_auc']:.4f} ({r['delta_roc_auc']:+.4f})")
            cells.append(f"{r['sensitivity']:.3f} / {r['specificity']:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    thresholds = " | ".join(
        f"{n}: {r['threshold']:.4g} ({r['threshold_rule']})" for n, r in runs.items()
    )
    print(f"\nStored thresholds: {thresholds}.\n")
    columns = ["model", "clean ROC-AUC", "mean suite ROC-AUC", "worst geometric change"]
    print("| " + " | ".join([*columns, "lowest shift sensitivity"]) + " |")
    print("|---|---:|---:|---|---|")
    for name, result in runs.items():
        print(summary_row(name, result))


def summary_row(name: str, result: dict[str, Any]) -> str:
    """The figures the adopt rules read, as a markdown row."""
    scored = [r for r in result["shifts"] if r["scored"]]
    clean = next(r for r in scored if r["shift"] == "clean")
    geometric = min(
        (r for r in scored if r["group"] == "geometry"), key=lambda r: r["delta_roc_auc"]
    )
    shifted = [r for r in scored if r["shift"] != "clean"]
    low = min(shifted, key=lambda r: r["sensitivity"])
    mean = sum(r["roc_auc"] for r in scored) / len(scored)
    return (
        f"| {name} | {clean['roc_auc']:.4f} | {mean:.4f} | {geometric['delta_roc_auc']:+.4f} "
        f"({geometric['shift']}) | {low['sensitivity']:.3f} ({low['shift']}) |"
    )


if __name__ == "__main__":
    main()
