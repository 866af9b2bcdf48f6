"""Benchmark: do the backends give one answer per image? And what does each cost?

    .venv/bin/python benchmarks/quality/backend_agreement.py --data work/manifest.csv \\
        [--int8 /tmp/old.int8.onnx] [--out reports/backend_agreement.json]

Judges, by `pneumonia export --int8`'s per-image parity rule (`training.quantize.parity`: on
every validation image, clean and under its eight shifts, the same label, the same borderline
verdict and |P change| <= 0.02), PyTorch and, with `--int8`, an int8 copy against the float
ONNX model of the shipped bundle; then times each backend's network alone on the clean
validation squares (batches of 32, one warm-up batch, three runs), side by side in this run,
as images/s and as a ratio to the float ONNX model. The validation split only, never test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core.preprocess import to_array
from pneumonia.evaluation.evaluate import select_items
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import load_squares
from pneumonia.inference.runtime import OnnxModel, run_network
from pneumonia.training import quantize


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def rate(model: Any, x: np.ndarray, runs: int = 3) -> list[float]:
    """Images/s of the network alone over `x` in batches of 32, `runs` times."""
    run_network(model, x[:32])
    found = []
    for _ in range(runs):
        start = time.perf_counter()
        for k in range(0, len(x), 32):
            run_network(model, x[k : k + 32])
        found.append(len(x) / (time.perf_counter() - start))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--int8", type=Path, help="an int8 copy of the shipped model.onnx")
    parser.add_argument("--out", type=Path, default=Path("reports/backend_agreement.json"))
    args = parser.parse_args()
    onnx, torch_bundle = load_bundle(None, "onnx"), load_bundle(None, "torch")
    others: dict[str, Any] = {"torch": torch_bundle.model}
    if args.int8:
        others["int8"] = OnnxModel(args.int8)
    results: dict[str, Any] = {"cpu": cpu(), "judged": {}, "images_per_s": {}}
    for name, model in others.items():
        labels, ref, got = quantize.judge_views(onnx, model, args.data, "val", None)
        found = quantize.parity(labels, ref, got, onnx)
        results["judged"][name] = {k: v for k, v in found.items() if k != "shifts"}
        print(f"{name} vs float ONNX: {json.dumps(results['judged'][name], default=str)}")
    items, _ = select_items(args.data, "val")
    squares = [s for s in load_squares([it.path for it in items], onnx.contract, show=False)
               if not isinstance(s, str)]  # fmt: skip
    x = to_array(np.stack(squares), onnx.contract)
    for name, model in {"onnx": onnx.model, **others}.items():
        results["images_per_s"][name] = rate(model, x)
    base = np.median(results["images_per_s"]["onnx"])
    print(f"\n{results['cpu']}, {len(x)} validation squares, batches of 32, three runs:\n")
    print("| backend | images/s (three runs) | ratio to float ONNX (median) |")
    print("| --- | ---: | ---: |")
    for name, runs in results["images_per_s"].items():
        shown = ", ".join(f"{r:.0f}" for r in runs)
        print(f"| {name} | {shown} | {np.median(runs) / base:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
