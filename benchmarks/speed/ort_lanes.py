"""Benchmark: ONNX Runtime images/s by threads per call and calls at once, per model file.

    .venv/bin/python benchmarks/speed/ort_lanes.py MODEL.onnx [MODEL.onnx ...] [--seconds 4]

For each file: one call at a time on all cores (the old setting), one call at a time on one
thread, and one one-thread call per core at once (`OnnxModel`'s lanes, the default since
2026-11-23), at batch 1 and 4, on zeros of the model's input size. Sessions as `OnnxModel`
makes them (all graph optimisations, no spinning). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pneumonia.core.progress import default_workers


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def threaded_rate(call: Callable[[], int], threads: int, seconds: float) -> float:
    """Items/s of `threads` threads, each repeating `call` (which returns how many items it
    did) until `seconds` have passed."""
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def lane(i: int) -> None:
        while time.perf_counter() < stop:
            counts[i] += call()

    workers = [threading.Thread(target=lane, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def rate(path: Path, threads: int, calls: int, batch: int, seconds: float) -> float:
    """Images/s of `calls` threads each running one batch after another on one session."""
    s = session(path, threads)
    name, shape = s.get_inputs()[0].name, s.get_inputs()[0].shape
    x = np.zeros((batch, *[int(d) for d in shape[1:]]), np.float32)
    s.run(None, {name: x})

    def one_batch() -> int:
        s.run(None, {name: x})
        return batch

    return threaded_rate(one_batch, calls, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    cores = default_workers()
    settings = [(cores, 1), (1, 1), (1, cores)]
    cells = [(t, c, b) for t, c in settings for b in (1, 4)]
    head = " | ".join(f"{t} thread(s) x {c} call(s), batch {b}" for t, c, b in cells)
    print(f"\nimages/s on {cores} cores, {args.seconds:g} s per cell\n")
    print(f"| model | {head} |")
    print("| --- |" + " ---: |" * (2 * len(settings)))
    for path in args.models:
        rates = [rate(path, t, c, b, args.seconds) for t, c, b in cells]
        print(f"| {path} | " + " | ".join(f"{v:.0f}" for v in rates) + " |", flush=True)


if __name__ == "__main__":
    main()
