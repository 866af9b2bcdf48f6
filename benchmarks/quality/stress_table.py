"""Side-by-side markdown table of shift-suite results (`pneumonia stress` JSON files).

    .venv/bin/python benchmarks/quality/stress_table.py NAME=path/stress.json \\
        [NAME=path/stress.json ...]

Per shift and model: ROC-AUC (change from clean) and sensitivity / specificity at that model's
stored threshold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
    print(f"\nStored thresholds: {thresholds}.")


if __name__ == "__main__":
    main()
