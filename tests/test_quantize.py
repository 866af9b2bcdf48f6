"""int8 quantization: the parity rule on known answers, and a copy kept only when it passes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TinyRun, unguarded_copy
from pneumonia import quantize
from pneumonia.bundle import INT8, BundleError, load_bundle
from pneumonia.cli import app
from pneumonia.errors import PneumoniaError
from pneumonia.export import export_onnx


@pytest.fixture
def exported(tiny_run: TinyRun, tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_run.bundle, folder)
    export_onnx(load_bundle(folder))
    return folder


def test_parity_rule_on_known_scores(tiny_run: TinyRun) -> None:
    bundle = load_bundle(tiny_run.bundle)
    labels = np.array([0] * 100 + [1] * 100)
    logits = np.linspace(-6, 6, 200)
    same = quantize.parity(labels, logits, logits.copy(), bundle)
    assert same["passed"] and same["same_labels"] == 1.0 and same["max_abs_diff_probability"] == 0
    at = float(np.log(bundle.threshold / (1 - bundle.threshold)) * bundle.temperature)
    nudged = logits.copy()
    near = np.argsort(np.abs(logits - at))[:2]  # two images pushed across the threshold
    nudged[near] = np.where(logits[near] >= at, at - 1, at + 1)
    two = quantize.parity(labels, logits, nudged, bundle)
    assert two["same_labels"] == pytest.approx(0.99) and not two["passed"]  # 99% < 99.5%


def test_a_failing_copy_is_recorded_not_kept(
    tiny_run: TinyRun, exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "SAME_LABELS", 1.01)  # no copy can pass
    manifest = tiny_run.cfg.data.manifest
    result = quantize.quantize_bundle(load_bundle(exported, "onnx"), manifest, images=16)
    assert not result["passed"] and not (exported / INT8).exists()
    meta = json.loads((exported / "model.json").read_text())
    assert meta["exports"]["int8"]["passed"] is False and INT8 not in meta["files"]
    assert "16 images of split 'train'" in meta["exports"]["int8"]["calibration"]
    assert load_bundle(exported, "auto").backend == "onnx"
    with pytest.raises(BundleError, match="no int8 model that passed"):
        load_bundle(exported, "int8")
    with pytest.raises(PneumoniaError, match="already has an int8 attempt"):
        quantize.quantize_bundle(load_bundle(exported, "onnx"), manifest)
    assert (
        "int8 (ONNX Runtime static quantization): not kept"
        in (exported / "MODEL_CARD.md").read_text()
    )


def test_a_passing_copy_is_kept_hashed_and_chosen(
    tiny_run: TinyRun, exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "SAME_LABELS", 0.0)  # any copy passes
    monkeypatch.setattr(quantize, "AUC_LIMIT", 1.0)
    manifest = str(tiny_run.cfg.data.manifest)
    result = CliRunner().invoke(app, ["export", str(exported), "--int8", "--data", manifest])
    assert result.exit_code == 0 and "kept: model.int8.onnx" in result.output, result.output
    # the guard was fitted on float features: auto keeps the float model and its guard
    guarded = load_bundle(exported, "auto")
    assert guarded.backend == "onnx" and guarded.guard is not None
    bundle = load_bundle(exported, "int8")
    assert bundle.backend == "int8" and (exported / INT8).is_file() and bundle.guard is None
    x = np.random.default_rng(0).normal(size=(2, 1, 32, 32)).astype(np.float32)
    assert bundle.model(x).shape == (2, 1)
    unguarded = unguarded_copy(exported, exported.parent / "unguarded")
    assert load_bundle(unguarded, "auto").backend == "int8"  # no guard: auto takes int8
    with (unguarded / INT8).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"model\.int8\.onnx: altered"):
        load_bundle(unguarded, "auto")


def test_int8_needs_data_and_never_judges_on_test(exported: Path, tiny_run: TinyRun) -> None:
    result = CliRunner().invoke(app, ["export", str(exported), "--int8"])
    assert result.exit_code != 0 and "--int8 needs --data" in result.output
    with pytest.raises(PneumoniaError, match="never on 'test'"):
        quantize.quantize_bundle(load_bundle(exported, "onnx"), tiny_run.cfg.data.manifest, "test")
