"""Benchmark: batch prediction throughput of PyTorch and ONNX Runtime, side by side, one run.

    .venv/bin/python benchmarks/speed/backend_throughput.py [--bundle DIR] [--images 256] \\
        [--batch 32]

The bundle (default: the shipped model) is copied to a temporary folder and exported to ONNX
there, so nothing in the package changes. Two measures per backend:
- network: contract tensors in batches, after one warm-up batch (the model alone);
- end to end: `predict_paths` on synthetic 1024x1024 PNG files (decode, resize, network).
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pneumonia.core.preprocess import fit_to_square, to_array
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import predict_paths
from pneumonia.inference.runtime import run_network
from pneumonia.modeling.export import export_onnx


def network_rate(bundle: Bundle, squares: np.ndarray, batch: int) -> float:
    """Images/s of the network alone over `squares`, in batches, after a warm-up batch."""
    batches = [
        to_array(squares[i : i + batch], bundle.contract) for i in range(0, len(squares), batch)
    ]
    run_network(bundle.model, batches[0])
    start = time.perf_counter()
    for x in batches:
        run_network(bundle.model, x)
    return len(squares) / (time.perf_counter() - start)


def end_to_end_rate(bundle: Bundle, paths: list[str], batch: int) -> float:
    """Images/s of `predict_paths` (decoding in threads while the network runs in batches)."""
    start = time.perf_counter()
    predict_paths(bundle, paths, batch, show=False)
    return len(paths) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="bundle folder (default: shipped model)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--files", type=int, default=64, help="PNG files for end to end")
    parser.add_argument("--side", type=int, default=1024, help="side of the PNG files")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bundle"
        shutil.copytree(load_bundle(args.bundle).path, folder)
        torch_bundle = load_bundle(folder)
        export_onnx(torch_bundle)
        torch_bundle = load_bundle(folder)
        rng = np.random.default_rng(0)
        size, resize = torch_bundle.contract.image_size, torch_bundle.contract.resize
        squares = np.stack(
            [fit_to_square(synthetic_xray("PNEUMONIA", size, size, rng), size, resize)]
            * args.images
        )
        paths = [
            str(
                save_image(
                    synthetic_xray("NORMAL", args.side, args.side, rng), Path(tmp) / f"{i}.png"
                )
            )
            for i in range(args.files)
        ]
        results = {}
        for backend in ("torch", "onnx"):
            bundle = load_bundle(folder, backend)
            results[backend] = {
                "network": network_rate(bundle, squares, args.batch),
                "end_to_end": end_to_end_rate(bundle, paths, args.batch),
            }
    arch = torch_bundle.meta.architecture.name
    print(
        f"\n{arch} at {size} px, batch {args.batch}; {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n"
    )
    print(
        f"| backend | network images/s ({args.images} images) | end to end images/s "
        f"({args.files} PNG files, {args.side}x{args.side}) |"
    )
    print("| --- | ---: | ---: |")
    for backend, r in results.items():
        print(f"| {backend} | {r['network']:.1f} | {r['end_to_end']:.1f} |")
    return results


if __name__ == "__main__":
    main()
