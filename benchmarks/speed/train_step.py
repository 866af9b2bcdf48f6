"""Benchmark: one training step of a registry model (forward, backward, AdamW) on the CPU.

    .venv/bin/python benchmarks/speed/train_step.py [--model efficientnet_lite0] [--batch 32]
        [--settings 192:0 192:3 160:0 160:3] [--steps 10] [--allocator default keep]
        [--ops] [--compile]

Each setting is SIZE:FROZEN, an input side and `train.frozen_stages` (the first stages, stem
first, kept frozen as `pneumonia.modeling.classifier.freeze_stages` does). Random grayscale inputs,
`channels_last` as training uses, the median of `--steps` timed steps after two warm-up steps.
`--allocator`: each setting with glibc's malloc as it comes (`default`), then, in the same
process, after `pneumonia.modeling.allocator.keep_freed_memory()` (`keep`, what
`pneumonia train` does),
with the minor page faults per step (`resource.getrusage`).
`--ops` also prints the operators that take the most time in three steps of the first setting
after two warm-up steps (torch.profiler). `--compile` adds the first setting under
`torch.compile` (its first step, the compilation, timed apart). Prints markdown tables for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pneumonia.modeling.allocator import keep_freed_memory
from pneumonia.modeling.classifier import freeze_stages
from pneumonia.modeling.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine


def step_function(
    model: torch.nn.Module, size: int, batch: int, compiled: bool = False
) -> Callable[[], None]:
    """One optimisation step of `model` (or of `torch.compile(model)`) on a fixed random batch."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    forward = torch.compile(model) if compiled else model
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch, 1)

    def step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(forward(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def build(name: str, frozen: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, pretrained=False, num_classes=1)
    freeze_stages(model, frozen)
    return model.to(memory_format=torch.channels_last).train()


def median_seconds(step: Callable[[], None], steps: int) -> float:
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def top_ops(step: Callable[[], None], rows: int = 8) -> str:
    """The operators' self CPU time over three steps, after two warm-up steps (a cold step
    spends its time differently: first-touch memory and layout conversions)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--settings", nargs="+", default=["192:0", "192:3", "160:0", "160:3"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--allocator", nargs="+", choices=["default", "keep"], default=["default"])
    parser.add_argument("--ops", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    print(f"{machine()}, torch {torch.__version__}, {threads} threads")
    results: dict[str, float] = {}
    header = f"s per step of {args.batch} | page faults per step"
    print(
        f"\n| allocator | input | stages frozen | {header} |\n| --- | ---: | ---: | ---: | ---: |"
    )
    for allocator in args.allocator:
        if allocator == "keep" and not keep_freed_memory():
            print("| keep | not available here (glibc's mallopt) | | | |")
            continue
        for setting in args.settings:
            size, frozen = (int(v) for v in setting.split(":"))
            step = step_function(build(args.model, frozen), size, args.batch)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            seconds = median_seconds(step, args.steps)
            per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (
                args.steps + 2
            )
            results[f"{allocator} {setting}"] = seconds
            results[f"{allocator} {setting} faults"] = per_step
            print(f"| {allocator} | {size} | {frozen} | {seconds:.3f} | {per_step:,.0f} |")
    size, frozen = (int(v) for v in args.settings[0].split(":"))
    if args.compile:
        step = step_function(build(args.model, frozen), size, args.batch, compiled=True)
        start = time.perf_counter()
        step()
        results["compile_first_step"] = time.perf_counter() - start
        results["compiled"] = median_seconds(step, args.steps)
        print(
            f"\ntorch.compile, {args.settings[0]}: first step (compiling) "
            f"{results['compile_first_step']:.0f} s, then {results['compiled']:.3f} s per step"
        )
    if args.ops:
        print(f"\n{args.settings[0]}, three steps:\n")
        print(top_ops(step_function(build(args.model, frozen), size, args.batch)))
    return results


if __name__ == "__main__":
    main()
