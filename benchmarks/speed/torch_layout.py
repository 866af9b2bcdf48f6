"""Benchmark: PyTorch inference of the shipped network in NCHW and channels-last layout.

    .venv/bin/python benchmarks/speed/torch_layout.py [--batches 4 32] [--images 256]

The shipped model's network (`load_bundle(None, "torch")`), inference mode, the process's
torch threads, random inputs at the bundle's size; one warm-up call, then `--images` images
per setting. Prints a markdown table of images/s.
"""

from __future__ import annotations

import argparse
import time

import torch

from pneumonia.inference.loading import load_bundle

LAYOUTS = {"NCHW": torch.contiguous_format, "channels-last (NHWC)": torch.channels_last}


def rate(model: torch.nn.Module, x: torch.Tensor, images: int) -> float:
    """Images/s of `model` on batches like `x`, after one warm-up call."""
    calls = max(1, images // len(x))
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(calls):
            model(x)
    return calls * len(x) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, dict[int, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args(argv)
    bundle = load_bundle(None, "torch")
    size = bundle.contract.image_size
    results: dict[str, dict[int, float]] = {}
    for name, layout in LAYOUTS.items():
        model = bundle.model.to(memory_format=layout)
        results[name] = {
            b: rate(
                model, torch.randn(b, 1, size, size).contiguous(memory_format=layout), args.images
            )
            for b in args.batches
        }
    print(f"\n{bundle.meta.architecture.name} at {size} px, {torch.get_num_threads()} threads\n")
    print("| layout | " + " | ".join(f"batch {b}" for b in args.batches) + " |")
    print("| --- |" + " ---: |" * len(args.batches))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f} images/s" for v in row.values()) + " |")
    return results


if __name__ == "__main__":
    main()
