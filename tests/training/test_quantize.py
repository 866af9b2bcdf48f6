"""int8 quantization: the parity rule on known answers, and a copy kept only when it passes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TinyRun, band, unguarded_copy
from pneumonia.cli import app
from pneumonia.core.bundle import INT8
from pneumonia.core.errors import BundleError, PneumoniaError
from pneumonia.inference.loading import load_bundle
from pneumonia.training import quantize


def _nudged(logits: np.ndarray, at: float, count: int) -> np.ndarray:
    """`logits` with the `count` nearest to `at` pushed across it."""
    out = logits.copy()
    near = np.argsort(np.abs(logits - at))[:count]
    out[near] = np.where(logits[near] >= at, at - 1, at + 1)
    return out


def test_parity_rule_on_known_scores(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    labels = np.array([0] * 100 + [1] * 100)
    logits = np.linspace(-6, 6, 200)
    clean = (logits[None], None)
    same = quantize.parity(labels, clean, (logits[None].copy(), None), bundle)
    assert same["passed"] and same["same_labels"] == 1.0 and same["max_abs_diff_probability"] == 0
    at = float(np.log(bundle.threshold / (1 - bundle.threshold)) * bundle.temperature)
    two = quantize.parity(labels, clean, (_nudged(logits, at, 2)[None], None), bundle)
    assert two["label_changes"] == 2 and not two["passed"]  # one image is one too many

    # no label changes, but one image's P moves by more than 0.02
    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)) * bundle.temperature)

    high = (1 + bundle.threshold) / 2  # well above the threshold; P then moves by 0.04
    pair = (np.array([[logit(high), -6.0]]), None), (np.array([[logit(high + 0.04), -6.0]]), None)
    nudged = quantize.parity(np.array([1, 0]), *pair, bundle)
    assert nudged["label_changes"] == 0 and nudged["max_abs_diff_probability"] > 0.02
    assert not nudged["passed"]
    # clean views agree, a shifted view does not
    views = np.stack([logits, logits])
    shifted = np.stack([logits, _nudged(logits, at, 2)])
    moved = quantize.parity(labels, (views, None), (shifted, None), bundle)
    assert moved["same_labels"] == 1.0 and moved["shifted_label_changes"] == 2
    assert not moved["passed"]
    # the same labels, but an answer leaves the borderline band: what users see changes
    banded = load_bundle(band(shutil.copytree(tiny_run.bundle, tmp_path / "banded"), 1.0))
    low, _ = banded.meta.borderline.limits(banded.threshold)  # type: ignore[union-attr]
    edge = float(np.log(low / (1 - low)) * banded.temperature)
    inside_band = np.array([edge + 0.004])
    crossed = quantize.parity(np.array([1]), (inside_band[None], None),
                              ((inside_band - 0.008)[None], None), banded)  # fmt: skip
    assert crossed["label_changes"] == 0 and crossed["borderline_changes"] == 1
    assert not crossed["passed"]
    # same labels everywhere, but the guard changes its verdict on 2% of the images
    assert bundle.guard is not None
    inside = np.full((2, 200), bundle.guard.threshold / 2)
    outside = inside.copy()
    outside[1, :8] = bundle.guard.threshold * 2
    guard = quantize.parity(labels, (views, inside), (views.copy(), outside), bundle)
    assert guard["same_guard_verdict"] == pytest.approx(0.98) and not guard["passed"]
    assert quantize.parity(labels, (views, inside), (views.copy(), inside), bundle)["passed"]


def test_a_failing_copy_is_recorded_not_kept(
    tiny_run: TinyRun, exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "MAX_DP", -1.0)  # no copy can pass
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
    rule = quantize.parity  # any copy passes

    monkeypatch.setattr(quantize, "parity", lambda *args: {**rule(*args), "passed": True})
    manifest = str(tiny_run.cfg.data.manifest)
    result = CliRunner().invoke(app, ["export", str(exported), "--int8", "--data", manifest])
    assert result.exit_code == 0 and "kept: model.int8.onnx" in result.output, result.output
    # judged with the bundle's guard: auto runs int8, guarded
    guarded = load_bundle(exported, "auto")
    assert guarded.backend == "int8" and guarded.guard is not None
    record = json.loads((exported / "model.json").read_text())["exports"]["int8"]
    assert record["same_guard_verdict"] >= 0 and record["shifts"] == list(quantize.PARITY_SHIFTS)
    bundle = load_bundle(exported, "int8")
    assert bundle.backend == "int8" and (exported / INT8).is_file()
    x = np.random.default_rng(0).normal(size=(2, 1, 32, 32)).astype(np.float32)
    assert bundle.model(x).shape == (2, 1)
    refit = CliRunner().invoke(app, ["guard", str(exported), "--data", manifest, "--force"])
    assert refit.exit_code == 0, refit.output
    # a new guard was never judged on the int8 model: auto goes back to float, guarded
    after = load_bundle(exported, "auto")
    assert after.backend == "onnx" and after.guard is not None
    assert load_bundle(exported, "int8").guard is None  # asked for: int8 runs, guard off
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
