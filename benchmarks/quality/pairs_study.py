"""Real-files study (issue 34): candidates' answers on originals against their copies.

    .venv/bin/python benchmarks/quality/pairs_study.py NAME=BUNDLE[:RESIZE] ... [--half B]
        [--originals DIR] [--copies DIR] [--halves work/originals-halves.json]
        [--out reports/pairs-study]

For each candidate (a bundle, `shipped` for the shipped model, optionally scored under another
resize contract on the same weights: `C1=shipped:stretch`), `pneumonia pairs` on the pairs of
`--half` (A or B of `originals_manifest.py`'s halves; `all` for every pair) with every
rendering, on the backend a user gets (auto). Writes OUT/<name>/pairs.json and a markdown
table (printed) with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import COPIES, ORIGINALS, machine

from pneumonia.evaluation.pairs import pairs_report
from pneumonia.inference.loading import load_bundle


def candidate(spec: str) -> tuple[str, str | None, str | None]:
    """`NAME=BUNDLE[:RESIZE]` -> (name, bundle folder or None for the shipped one, resize)."""
    name, _, rest = spec.partition("=")
    folder, _, resize = (rest or "shipped").partition(":")
    return name, None if folder == "shipped" else folder, resize or None


def run(spec: str, args: argparse.Namespace, only: set[str] | None) -> dict[str, Any]:
    """One candidate's pairs report (its bundle's contract, or `resize` on the same weights)."""
    name, folder, resize = candidate(spec)
    bundle = load_bundle(folder, "auto")
    if resize is not None:
        contract = bundle.meta.preprocessing.model_copy(update={"resize": resize})
        bundle = replace(bundle, meta=bundle.meta.model_copy(update={"preprocessing": contract}))
    started = time.perf_counter()
    result = pairs_report(bundle, args.originals, args.copies, args.out / name, None, only)
    return {"name": name, "seconds": time.perf_counter() - started, **result}


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per candidate and rendering."""
    lines = [
        "| candidate | rendering | mean \\|dp\\| | p95 | max | flips | guard changes | flagged "
        "(copies) | sens orig / copy | spec orig / copy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for view, a in r["renderings"].items():
            flagged = "-" if a["flagged"] is None else f"{a['flagged']} ({a['flagged_copy']})"
            rates = [
                f"{a['rendering'][k]:.3f} / {a['copy'][k]:.3f}"
                for k in ("sensitivity", "specificity")
            ]
            lines.append(
                f"| {r['name']} | {view} | {a['mean_dp']:.4f} | {a['p95_dp']:.3f} | "
                f"{a['max_dp']:.3f} | {a['flips']} | {a['guard_changes']} | {flagged} | "
                + " | ".join(rates)
                + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", help="NAME=BUNDLE[:RESIZE]; BUNDLE 'shipped'")
    parser.add_argument("--half", choices=["A", "B", "all"], default="B")
    parser.add_argument("--originals", type=Path, default=ORIGINALS)
    parser.add_argument("--copies", type=Path, default=COPIES)
    parser.add_argument("--halves", type=Path, default=Path("work/originals-halves.json"))
    parser.add_argument("--out", type=Path, default=Path("reports/pairs-study"))
    args = parser.parse_args(argv)
    only = None
    if args.half != "all":
        files = json.loads(args.halves.read_text())["files"]
        only = {name for name, half in files.items() if half == args.half}
    results = [run(spec, args, only) for spec in args.candidates]
    first = results[0]
    print(
        f"{first['pairs']} pairs ({first['patients']} patients, {first['positives']} PNEUMONIA, "
        f"{first['negatives']} NORMAL), half {args.half}; {machine()}; "
        + ", ".join(f"{r['name']} {r['seconds']:.0f} s" for r in results)
    )
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    summary = [{k: v for k, v in r.items() if k != "unmatched"} for r in results]
    (args.out / f"study-{args.half}.json").write_text(json.dumps(summary, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
