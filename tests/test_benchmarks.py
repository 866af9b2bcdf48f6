"""The benchmark scripts run, in smoke mode, and measure what they say (not how fast)."""

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import TinyRun

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_service_latency_smoke(tiny_run: TinyRun, capsys: pytest.CaptureFixture[str]) -> None:
    result = load("service_latency").main(
        ["--smoke", "--bundle", str(tiny_run.bundle), "--side", "64"]
    )
    assert result["requests"] > 0 and result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert "| torch | 2 |" in capsys.readouterr().out
    args = ["--smoke", "--bundle", str(tiny_run.bundle), "--side", "64", "--backend", "onnx"]
    assert load("service_latency").main(args)["requests"] > 0
    assert not (tiny_run.bundle / "model.onnx").exists()


def test_backend_throughput_smoke(tiny_run: TinyRun, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--bundle",
        str(tiny_run.bundle),
        "--images",
        "8",
        "--files",
        "2",
        "--side",
        "64",
        "--batch",
        "4",
    ]
    result = load("backend_throughput").main(args)
    assert set(result) == {"torch", "onnx"}
    assert all(v > 0 and math.isfinite(v) for r in result.values() for v in r.values())
    out = capsys.readouterr().out
    assert "| torch |" in out and "| onnx |" in out
    assert not (tiny_run.bundle / "model.onnx").exists()  # exported into a copy only
