"""Study: which int8 recipe, if any, answers like the float model on clean AND shifted data?

    .venv/bin/python benchmarks/speed/int8_study.py [--bundle DIR] [--data work/manifest.csv]

Each candidate quantizes the bundle's float `model.onnx` (ONNX Runtime static QDQ, calibrated
on 256 training images of the manifest, never validation) and is compared with the float
model on the validation split, clean and under eight realistic shifts (`pneumonia.data.shifts`),
and timed (images/s, one image per call, one call per core at once).

Adopt rule, written before the run: a candidate becomes the recipe of
`pneumonia export --int8` when, against the float model on validation,
  1. clean: |ROC-AUC change| <= 0.002 and >= 99.5% same labels (issue 13's parity rule);
  2. the shifted views, pooled: >= 99.5% same labels, and no shift's |ROC-AUC change| > 0.005;
  3. the guard (fitted on float features) gives the same verdict on >= 99.5% of the clean and
     shifted images, pooled;
  4. it runs >= 1.5x the float model's images/s.
Among the candidates that pass, the fastest. If none passes, int8 stays an opt-in whose file is
kept only when it passes the parity rule, and `--backend auto` keeps the float model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ort_lanes import threaded_rate  # benchmarks/, beside this script

from pneumonia.inference.loading import load_bundle
from pneumonia.inference.runtime import OnnxModel
from pneumonia.training.quantize import (
    PARITY_SHIFTS,
    Int8Recipe,
    calibration_batches,
    judge_views,
    parity,
    quantize_file,
)

CANDIDATES = {
    "minmax": Int8Recipe("minmax"),
    "minmax_float_ends": Int8Recipe("minmax", float_ends=True),
    "percentile": Int8Recipe("percentile"),
    "percentile_float_ends": Int8Recipe("percentile", float_ends=True),
    "entropy": Int8Recipe("entropy"),
}


def images_per_second(path: Path, size: int, seconds: float = 4.0) -> float:
    """Images/s of the model one image per call, one call per lane at once."""
    model = OnnxModel(path)
    x = np.zeros((1, 1, size, size), np.float32)
    model(x)

    def one_image() -> int:
        model(x)
        return 1

    return threaded_rate(one_image, model.lanes, seconds)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="bundle folder (default: shipped model)")
    parser.add_argument("--data", default="work/manifest.csv")
    parser.add_argument("--out", default="reports/int8_study.json")
    parser.add_argument("--only", nargs="*", default=list(CANDIDATES), help="candidate names")
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per model")
    args = parser.parse_args(argv)
    bundle = load_bundle(args.bundle, "onnx")
    float_speed = images_per_second(bundle.model.path, bundle.contract.image_size, args.seconds)
    batches = calibration_batches(bundle, Path(args.data), 256, 0, None)
    results: dict[str, Any] = {"float_images_per_s": float_speed, "candidates": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            target = Path(tmp) / f"{name}.onnx"
            quantize_file(bundle.model.path, target, batches, CANDIDATES[name])
            speed = images_per_second(target, bundle.contract.image_size, args.seconds)
            labels, ref, got = judge_views(bundle, OnnxModel(target), Path(args.data), "val", None)
            row = parity(labels, ref, got, bundle) | {"images_per_s": speed}
            row["speedup"] = speed / float_speed
            row["passed"] = bool(row["passed"] and row["speedup"] >= 1.5)
            results["candidates"][name] = row
            print(name, json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nfloat: {float_speed:.0f} images/s; validation clean and under "
          f"{', '.join(PARITY_SHIFTS)}\n")  # fmt: skip
    print("| candidate | clean AUC change | clean same labels | shifted same labels | "
          "worst shift AUC change | same guard verdict | images/s | passed |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, r in results["candidates"].items():
        auc_change = r["roc_auc_int8"] - r["roc_auc_float"]
        print(f"| {name} | {auc_change:+.4f} | {r['same_labels']:.3f} | "
              f"{r['shifted_same_labels']:.3f} | {r['worst_shift_auc_change']:.4f} "
              f"({r['worst_shift']}) | {r['same_guard_verdict']:.3f} | {r['images_per_s']:.0f} "
              f"({r['speedup']:.2f}x) | {'yes' if r['passed'] else 'no'} |")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
