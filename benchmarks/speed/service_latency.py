"""Benchmark: latency of `pneumonia serve` under concurrent clients on 127.0.0.1.

    .venv/bin/python benchmarks/speed/service_latency.py [--bundle DIR] \\
        [--backend auto|onnx|torch] \
        [--clients 8] [--seconds 30] [--side 224] [--max-batch 16] [--max-wait-ms 2] [--threads N]
    .venv/bin/python benchmarks/speed/service_latency.py --smoke      # 2 clients, 2 s (the tests)

Starts the service in its own process (`python -m pneumonia serve`), waits for /health, then
each client thread posts the same synthetic PNG X-ray to /predict in a loop until the time is
up. Prints requests, errors, throughput and the p50/p95/p99 latency of the successful ones.
The service micro-batches concurrent requests (`--max-batch`, `--max-wait-ms`; `--max-batch 1`
answers each request on its own). With `--backend onnx` and a bundle without `model.onnx`,
the bundle is copied to a temporary folder and exported there first.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from pneumonia.core.bundle import ONNX, read_meta
from pneumonia.data.synthetic import synthetic_xray
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.export import export_onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import free_port


@contextmanager
def running_service(
    bundle: str | None, backend: str, extra: list[str], timeout: float = 120
) -> Iterator[str]:
    """`pneumonia serve` in a subprocess on a free port; yields its URL once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "pneumonia", "serve", *([bundle] if bundle else [])]
    log_dir = tempfile.mkdtemp(prefix="pneumonia-bench-log-")  # logging on, as by default
    command += ["--port", str(port), "--backend", backend, "--log", f"{log_dir}/log.sqlite"]
    command += extra
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the service did not answer /health in time")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(log_dir, ignore_errors=True)


def png_upload(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_xray("PNEUMONIA", side, side, np.random.default_rng(0))).save(
        buffer, "PNG"
    )
    return buffer.getvalue()


def run_load(url: str, payload: bytes, clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads posting `payload` to /predict until `seconds` pass."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                response = http.post(
                    f"{url}/predict", files={"files": ("x.png", payload, "image/png")}
                )
                elapsed = time.perf_counter() - start
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "per_second": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p95_ms": float(np.percentile(ms, 95)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="bundle folder (default: shipped model)")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"))
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--no-log", action="store_true", help="serve without the prediction log")
    parser.add_argument("--smoke", action="store_true", help="2 clients for 2 s")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.seconds = 2, 2.0
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        meta = read_meta(args.bundle)[1]
        if args.backend == "onnx" and ONNX not in meta.files:  # export into a copy
            bundle = str(Path(tmp) / "bundle")
            shutil.copytree(load_bundle(args.bundle).path, bundle)
            export_onnx(load_bundle(bundle))
        extra = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
        extra += ["--threads", str(args.threads)] if args.threads else []
        extra += ["--no-log"] if args.no_log else []
        with running_service(bundle, args.backend, extra) as url:
            result = run_load(url, png_upload(args.side), args.clients, args.seconds)
    print(
        f"\n{args.backend}, {args.clients} clients, {args.seconds:g} s, max batch "
        f"{args.max_batch}, wait {args.max_wait_ms:g} ms, "
        f"log {'off' if args.no_log else 'on'}, one "
        f"{args.side}x{args.side} PNG per request; {platform.machine()}, {os.cpu_count()} cores\n"
    )
    print("| backend | clients | requests | errors | requests/s | p50 ms | p95 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.backend} | {args.clients} | {result['requests']} | {result['errors']} | "
        f"{result['per_second']:.1f} | {result['p50_ms']:.0f} | {result['p95_ms']:.0f} | "
        f"{result['p99_ms']:.0f} |"
    )
    return result


if __name__ == "__main__":
    main()
