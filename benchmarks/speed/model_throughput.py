"""Benchmark: training and evaluation throughput of every registry model, one table, one run.

    .venv/bin/python benchmarks/speed/model_throughput.py [--size 224] [--native] [--batch 16]
        [--steps 3] [--models NAME ...]

Training: forward + backward + AdamW step in train mode, channels-last, as `pneumonia train`
runs it. Evaluation: forward in inference mode. Random inputs (speed does not depend on the
pixels); one warm-up step before the timed ones. Prints a markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from pneumonia.modeling.models import count_parameters, create_model, get_spec, list_models


def images_per_second(name: str, size: int, batch: int, steps: int, train: bool) -> float:
    """Throughput of one model in training or evaluation mode."""
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,)).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train(train)

    def step() -> None:
        if train:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.inference_mode():
                model(x)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[str]:
    """Measure every model; print and return the markdown table rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list_models())
    parser.add_argument(
        "--native", action="store_true", help="each model at its native size, where it has one"
    )
    args = parser.parse_args(argv)
    cpu = f"{os.cpu_count()} cores {platform.machine()}, torch {torch.__version__}"
    cpu += f", {torch.get_num_threads()} threads"
    rows = [
        f"Input 1xSxS (S: {'native' if args.native else args.size}), batch {args.batch}, "
        f"{args.steps} timed steps; {cpu}",
        "",
        "| model | input | parameters | train images/s | eval images/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(rows), flush=True)
    for name in args.models:
        size = (get_spec(name).native_size if args.native else None) or args.size
        params = count_parameters(create_model(name))
        train = images_per_second(name, size, args.batch, args.steps, train=True)
        evals = images_per_second(name, size, args.batch, args.steps, train=False)
        rows.append(f"| {name} | {size} | {params / 1e6:.2f} M | {train:.1f} | {evals:.1f} |")
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
