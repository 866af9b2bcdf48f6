"""`pneumonia recontract`: the same weights under another contract, everything else fitted again."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TinyRun, band
from pneumonia.cli import app
from pneumonia.core.bundle import WEIGHTS
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.preprocess import Render
from pneumonia.data.split import read_manifest
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import predict_paths
from pneumonia.training.recontract import operating_config, recontract


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_recontract_keeps_the_network_and_fits_the_rest_again(
    tiny_run: TinyRun, exported: Path, tmp_path: Path
) -> None:
    manifest = tiny_run.cfg.data.manifest
    out = tmp_path / "rendered"
    exported = band(Path(shutil.copytree(exported, tmp_path / "banded")))
    result = invoke(
        "recontract",
        exported,
        "--data",
        manifest,
        "--out",
        out,
        "--render",
        "32:40:0.5",
        "--workers",
        1,
    )
    assert result.exit_code == 0, result.output
    before, after = (json.loads((f / "model.json").read_text()) for f in (exported, out))
    assert after["preprocessing"]["render"] == {"side": 32, "quality": 40, "blur": 0.5}
    assert after["files"]["model.onnx"] == before["files"]["model.onnx"]  # the same network
    assert after["files"][WEIGHTS]["sha256"] != before["files"][WEIGHTS]["sha256"]  # new header
    assert after["threshold"]["detail"]["previous"]["value"] == before["threshold"]["value"]
    assert after["training"]["recontracted"]["previous_preprocessing"]["render"] is None
    assert "recontract" in after["training"]["recontracted"]["command"]
    assert after["borderline"] is None  # measured under the old contract
    assert (after["guard"] is None) == (before["guard"] is None)
    if after["guard"] is not None:
        assert after["files"]["guard.safetensors"] != before["files"]["guard.safetensors"]
    new = load_bundle(out, "torch")  # the weights' header ties them to the new contract
    assert new.contract.render == Render(side=32, quality=40, blur=0.5)
    paths = [r.path for r in read_manifest(manifest)][:6]
    old_p = [
        p.probability for p in predict_paths(load_bundle(exported), paths, workers=1, show=False)
    ]
    new_p = [p.probability for p in predict_paths(new, paths, workers=1, show=False)]
    assert not np.allclose(old_p, new_p)  # the network now sees the rendered squares
    again = invoke("recontract", exported, "--data", manifest, "--out", out, "--render", "32:40")
    assert again.exit_code == 1 and "already exists" in again.output


def test_recontract_refuses_what_it_cannot_redo(
    tiny_run: TinyRun, exported: Path, tmp_path: Path
) -> None:
    manifest = tiny_run.cfg.data.manifest
    same = invoke("recontract", exported, "--data", manifest, "--out", tmp_path / "a")
    assert same.exit_code == 1 and "would not change" in same.output
    for text in ("big", "32:40:soft", "32:40:9"):
        bad = invoke(
            "recontract", exported, "--data", manifest, "--out", tmp_path / "b", "--render", text
        )
        assert bad.exit_code == 1 and "SIDE:QUALITY[:BLUR]" in bad.output, text
    no_onnx = tiny_run.bundle  # trained without an ONNX export
    contract = load_bundle(no_onnx).contract.model_copy(update={"resize": "stretch"})
    with pytest.raises(PneumoniaError, match=r"no model\.onnx"):
        recontract(no_onnx, contract, manifest, tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_operating_config_repeats_the_bundles_rule(tiny_run: TinyRun) -> None:
    meta = load_bundle(tiny_run.bundle).meta
    cfg = operating_config(meta)
    assert cfg.rule == meta.threshold.rule and cfg.calibrate == (meta.calibration is not None)
