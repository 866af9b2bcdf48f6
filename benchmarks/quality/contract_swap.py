"""The shift suite on a bundle's weights under another contract (issues 24 and 34).

    .venv/bin/python benchmarks/quality/contract_swap.py [BUNDLE] --resize stretch \
        [--render 224:75] --data work/manifest.csv --out reports/transfer/stretch_letterbox/stress

Loads the bundle on its float ONNX model, replaces the resize mode of its contract (and with
`--render SIDE:QUALITY` adds the copies' rendering step) in memory (nothing is written to the
bundle), and runs `pneumonia stress` on the validation split: every view reaches the network
through the swapped contract, as a user's file would. Without BUNDLE, the shipped default model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pneumonia.core.options import Scoring
from pneumonia.core.preprocess import RESIZE_MODES, Render
from pneumonia.evaluation.stress import stress
from pneumonia.inference.loading import load_bundle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path)
    parser.add_argument("--resize", choices=RESIZE_MODES, required=True)
    parser.add_argument("--render", help="SIDE:QUALITY, e.g. 224:75 (default: none)")
    parser.add_argument("--data", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bundle = load_bundle(args.bundle, "onnx")
    render = None
    if args.render:
        side, quality = (int(v) for v in args.render.split(":"))
        render = Render(side=side, quality=quality)
    update = {"resize": args.resize, "render": render}
    contract = bundle.meta.preprocessing.model_copy(update=update)
    bundle.meta = bundle.meta.model_copy(update={"preprocessing": contract})
    result = stress(
        bundle, args.data, args.split, args.out, scoring=Scoring(show=False, n_boot=200)
    )
    clean = result["shifts"][0]
    logging.info("%s under %s: clean ROC-AUC %.4f", bundle.path, contract, clean["roc_auc"])


if __name__ == "__main__":
    main()
