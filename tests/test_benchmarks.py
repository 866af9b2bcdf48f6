"""The benchmark scripts run, in smoke mode, and measure what they say (not how fast)."""

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conftest import TinyRun

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    """A benchmark script as a module; its folder on the path, as when it runs as a script."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
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
    assert "| auto | 2 |" in capsys.readouterr().out
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


def test_model_throughput_native_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    rows = load("model_throughput").main(
        ["--native", "--batch", "1", "--steps", "1", "--models", "cnn_small", "efficientnet_lite1"]
    )
    assert "| cnn_small | 224 |" in rows[-2] and "| efficientnet_lite1 | 240 |" in rows[-1]


def _suite_npz(folder: Path, logits: np.ndarray, temperature: float) -> None:
    names = ["clean", "wide_1.33", "crop_70"]
    folder.mkdir(parents=True)
    np.savez_compressed(
        folder / "stress_logits.npz",
        names=np.array(names),
        logits=logits,
        labels=np.arange(200) % 4 != 0,  # 150 positives: enough for the 0.99 target
        patients=np.array([f"p{i}" for i in range(200)]),
        temperature=temperature,
        threshold=0.5,
    )


def test_robust_judge_ensembles_the_calibrated_logits(tmp_path: Path) -> None:
    import json

    judge = load("robust_judge")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 200)), rng.normal(size=(3, 200))
    _suite_npz(tmp_path / "a" / "stress", a, 2.0)
    _suite_npz(tmp_path / "b" / "stress", b, 0.5)
    (tmp_path / "study.json").write_text(
        json.dumps([{"name": "a", "duration_s": 3}, {"name": "b", "duration_s": 4}])
    )
    record = judge.ensemble_record(tmp_path, "ab", ["a", "b"])
    saved = np.load(tmp_path / "ab" / "stress" / "stress_logits.npz")
    assert np.allclose(saved["logits"], (a / 2.0 + b / 0.5) / 2)
    assert record["duration_s"] == 7 and [r["shift"] for r in record["stress"]] == [
        "clean",
        "wide_1.33",
        "crop_70",
    ]
    assert record["stress"][0]["delta_roc_auc"] == 0
    clean_auc = record["stress"][0]["roc_auc"]
    scored = [r["roc_auc"] for r in record["stress"]]
    assert judge.mean_auc(record["stress"]) == pytest.approx(np.mean(scored))
    assert 0 <= clean_auc <= 1


def test_train_profile_splits_a_batch_into_its_parts(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny_run.cfg
    overrides = [
        f"data.manifest={cfg.data.manifest}",
        f"data.cache_dir={cfg.data.cache_dir}",
        "preprocess.image_size=32",
        "model.name=cnn_small",
        "model.pretrained=false",
        "train.frozen_stages=0",
        "operating.rule=youden",
        "data.batch_size=8",
        f"train.out_dir={tmp_path}",
    ]
    result = load("train_profile").main([*overrides, "--batches", "2", "--workers", "0"])
    parts = result[0]
    assert parts["batch"] > 0 and parts["forward"] > 0 and parts["backward"] > 0
    assert parts["forward"] + parts["backward"] <= parts["batch"]
    assert (tmp_path / "profile-w0" / "fit-profile.txt").is_file()
    assert "| 0 |" in capsys.readouterr().out


def test_inference_speed_times_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    module = load("inference_speed")
    module.SHARED = Path("/nonexistent")  # synthetic images, whatever is beside the repo
    result = module.main(["--images", "6", "--repeats", "1"])
    assert 0 < result["one_s"] < result["folder_s"] + 1 and result["per_second"] > 0
    assert "6 synthetic X-rays; flags: (none)" in capsys.readouterr().out


def test_ood_guard_smoke(tiny_run: TinyRun, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_run.cfg.data
    args = ["--bundle", str(tiny_run.bundle), "--manifest", str(cfg.manifest)]
    rows = load("ood_guard").main(
        [*args, "--cache", str(cfg.cache_dir), "--views", "1", "--per-kind", "2"]
    )
    assert len(rows) == 2 * 3 * 2  # views {0, 1} x components x budgets
    assert all(0 <= r["val flagged"] <= r["budget"] + 1e-9 for r in rows)
    out = capsys.readouterr().out
    assert "| views | components | budget |" in out and "baseline |logit|" in out


def test_int8_study_and_ort_lanes_smoke(
    tiny_run: TinyRun, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = exported
    out = tmp_path / "study.json"
    args = ["--bundle", str(folder), "--data", str(tiny_run.cfg.data.manifest), "--out", str(out)]
    result = load("int8_study").main([*args, "--only", "minmax", "--seconds", "0.2"])
    row = result["candidates"]["minmax"]
    assert 0 <= row["same_labels"] <= 1 and row["images_per_s"] > 0 and out.is_file()
    assert row["shifts"] and row["passed"] == (row["passed"] and row["speedup"] >= 1.5)
    assert "| minmax |" in capsys.readouterr().out
    load("ort_lanes").main([str(folder / "model.onnx"), "--seconds", "0.2"])
    table = [line for line in capsys.readouterr().out.splitlines() if "model.onnx |" in line]
    assert len(table) == 1 and all(float(v) > 0 for v in table[0].split("|")[2:-1])


def test_guard_fit_times_both_backends_and_they_agree(
    tiny_run: TinyRun, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_run.cfg.data
    args = ["--bundle", str(exported), "--manifest", str(data.manifest), "--views", "1"]
    result = load("guard_fit").main([*args, "--cache", str(data.cache_dir)])
    assert result["torch"] > 0 and result["onnx"] > 0 and result["score_difference"] < 1e-3
    assert "| onnx |" in capsys.readouterr().out


def test_train_step_times_each_setting(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--model", "cnn_small", "--settings", "32:0", "32:2", "--steps", "1", "--batch", "4"]
    result = load("train_step").main([*args, "--ops"])
    assert result["default 32:0"] > 0 and result["default 32:2"] > 0
    assert result["default 32:0 faults"] >= 0
    out = capsys.readouterr().out
    assert "| default | 32 | 2 |" in out and "convolution" in out
