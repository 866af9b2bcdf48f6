"""The shift suite on a bundle's weights under another resize mode (issue 24's study, part A).

    .venv/bin/python benchmarks/quality/contract_swap.py [BUNDLE] --resize stretch \
        --data work/manifest.csv --out reports/transfer/stretch_letterbox/stress

Loads the bundle on its float ONNX model, replaces the resize mode of its contract in memory
(nothing is written to the bundle), and runs `pneumonia stress` on the validation split: every
view reaches the network through the swapped contract, as a user's file would. Without
BUNDLE, the shipped default model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pneumonia.core.preprocess import RESIZE_MODES
from pneumonia.evaluation.stress import stress
from pneumonia.modeling.loading import load_bundle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path)
    parser.add_argument("--resize", choices=RESIZE_MODES, required=True)
    parser.add_argument("--data", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bundle = load_bundle(args.bundle, "onnx")
    contract = bundle.meta.preprocessing.model_copy(update={"resize": args.resize})
    bundle.meta = bundle.meta.model_copy(update={"preprocessing": contract})
    result = stress(bundle, args.data, args.split, args.out, show=False)
    clean = result["shifts"][0]
    logging.info("%s under %s: clean ROC-AUC %.4f", bundle.path, args.resize, clean["roc_auc"])


if __name__ == "__main__":
    main()
