"""The lean inference path: the shipped model on ONNX Runtime, without PyTorch.

The subprocess tests run the real commands in a fresh interpreter. With `block`, importing
any package of the training install fails there, as in `pip install pneumonia` without the
`train` extra; without it, the packages are installed but must stay unimported."""

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pneumonia.core.bundle import ONNX
from pneumonia.core.preprocess import Preprocessing
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import load_square, network_scores, predict_paths
from pneumonia.inference.runtime import OnnxModel, lane_map, run_network

TORCH = ("torch", "torchvision", "lightning", "timm", "pytorch_grad_cam")
TRAIN_ONLY = (*TORCH, "mlflow", "onnx", "kagglehub")  # the `train` extra

SCRIPT = """
import importlib.abc, json, sys
HEAVY = {heavy!r}
TORCH = {torch!r}
if {block!r}:
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Block())
    import importlib.util
    importlib.util.find_spec = (lambda real: lambda name, *a: None
        if name.split(".")[0] in HEAVY else real(name, *a))(importlib.util.find_spec)
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from pneumonia.inference.loading import load_bundle
from pneumonia.cli import app
from pneumonia.serving.serve import create_app
out = {{}}
run = CliRunner().invoke
r = run(app, ["predict", {image!r}, "--out", {tmp!r} + "/p"])
out["predict"] = [r.exit_code, r.output]
r = run(app, ["evaluate", "--data", {data!r}, "--out", {tmp!r} + "/e", "--bootstrap", "20",
              "--tracking-uri", "sqlite:///" + {tmp!r} + "/m.db"])
out["evaluate"] = [r.exit_code, r.output]
client = TestClient(create_app(load_bundle(None, "auto")))
with open({image!r}, "rb") as fh:
    body = fh.read()
out["serve"] = client.post("/predict", files={{"files": ("x.png", body)}}).json()
out["heavy"] = sorted(m for m in sys.modules if m.split(".")[0] in TORCH)
out["explain"] = client.post("/explain", files={{"file": ("x.png", body)}}).status_code
import os, pneumonia
from pneumonia import Bundle, Config, EvaluationResult, Prediction, TrainingResult
before = sorted(os.listdir({tmp!r}))
bundle = pneumonia.load_bundle()  # the public API: the fastest backend, no PyTorch
result = pneumonia.evaluate({data!r}, bundle, n_boot=20)  # writes nothing unless asked
answers = pneumonia.predict({image!r}, bundle)
out["api"] = [bundle.backend, isinstance(bundle, Bundle), isinstance(answers[0], Prediction),
              0 <= result["metrics"]["roc_auc"] <= 1, sorted(os.listdir({tmp!r})) == before]
if {block!r}:
    r = run(app, ["train", "train.epochs=1"])
    out["train"] = [r.exit_code, r.output]
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled folder of synthetic X-rays (class folders, no splits)."""
    root = tmp_path_factory.mktemp("lean")
    rng = np.random.default_rng(3)
    for label in ("NORMAL", "PNEUMONIA"):
        for i in range(3):
            save_image(synthetic_xray(label, 120, 150, rng), root / "data" / label / f"{i}.png")
    return root


def run_lean(images: Path, block: bool) -> dict:
    code = SCRIPT.format(
        heavy=TRAIN_ONLY,
        torch=TORCH,
        block=block,
        image=str(images / "data" / "PNEUMONIA" / "0.png"),
        data=str(images / "data"),
        tmp=str(images / ("blocked" if block else "open")),
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert "RESULT" in done.stdout, done.stdout + done.stderr
    return json.loads(done.stdout.split("RESULT", 1)[1])


def test_the_shipped_bundle_runs_its_verified_float_model_by_default() -> None:
    bundle = load_bundle(None, "onnx")
    assert bundle.backend == "onnx" and isinstance(bundle.model, OnnxModel)
    assert ONNX in bundle.meta.files and bundle.meta.exports["onnx"]["max_abs_diff_probability"]
    default = load_bundle(None, "auto")  # the int8 copy failed the per-image rule: not shipped
    record = default.meta.exports["int8"]
    assert default.backend == "onnx" and default.guard is not None and record["passed"] is False
    assert record["shifted_label_changes"] > 0 and "every image" in record["rule"]


@pytest.mark.slow
@pytest.mark.parametrize("block", [False, True], ids=["installed-unused", "not-installed"])
def test_predict_evaluate_serve_without_pytorch(images: Path, block: bool) -> None:
    out = run_lean(images, block)
    assert out["heavy"] == []
    assert out["api"] == ["onnx", True, True, True, True]
    code, text = out["predict"]
    assert code == 0 and "backend: ONNX Runtime" in text and "PNEUMONIA" in text, text
    code, text = out["evaluate"]
    assert code == 0 and "roc_auc" in text, text
    assert ("MLflow is not installed" in text) == block
    (result,) = out["serve"]["results"]
    assert 0 <= result["probability"] <= 1 and result["label"] in ("NORMAL", "PNEUMONIA")
    if block:
        assert out["explain"] == 501  # Grad-CAM needs PyTorch, and says so
        code, text = out["train"]
        assert code == 1 and "pip install 'pneumonia[train]'" in text, text
    else:
        assert out["explain"] == 200  # PyTorch loaded at the first /explain, not before


def test_onnx_answers_like_pytorch_on_the_shipped_model(images: Path) -> None:
    paths = sorted(str(p) for p in (images / "data").rglob("*.png"))
    on_torch = predict_paths(load_bundle(None, "torch"), paths, show=False, workers=1)
    on_onnx = predict_paths(load_bundle(None, "onnx"), paths, show=False, workers=1)
    for a, b in zip(on_torch, on_onnx, strict=True):
        assert a.probability is not None and b.probability is not None
        assert abs(a.probability - b.probability) < 1e-4 and a.label == b.label


def test_onnx_lanes_run_concurrently_and_keep_the_order(images: Path) -> None:
    paths = sorted(str(p) for p in (images / "data").rglob("*.png"))
    squares = [load_square((p, Preprocessing(image_size=192))) for p in paths]
    one, two = (load_bundle(None, "onnx", threads) for threads in (1, 2))
    assert (one.model.lanes, two.model.lanes) == (1, 2)
    a = network_scores(one.model, one.contract, squares * 3, batch_size=1, features=True)
    b = network_scores(two.model, two.contract, squares * 3, batch_size=1, features=True)
    assert a[1] is not None and b[1] is not None and a[1].shape[0] == 3 * len(paths)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


class TwoLanes:
    lanes = 2


def test_lane_map_runs_calls_side_by_side_in_order_reading_a_bounded_way_ahead() -> None:
    together = threading.Barrier(2, timeout=5)  # broken unless two calls run at once
    taken: list[int] = []

    def items() -> Iterator[int]:
        for i in range(12):
            taken.append(i)
            yield i

    def call(i: int) -> int:
        together.wait()
        return i * i

    out = []
    for result in lane_map(TwoLanes(), call, items()):
        out.append(result)
        assert len(taken) - len(out) <= 2 * TwoLanes.lanes
    assert out == [i * i for i in range(12)]


def test_run_network_takes_numpy_for_both_backends() -> None:
    x = np.random.default_rng(0).normal(size=(3, 1, 192, 192)).astype(np.float32)
    a = run_network(load_bundle(None, "torch").model, x)
    b = run_network(load_bundle(None, "onnx").model, x)
    assert a.shape == b.shape == (3,) and np.abs(a - b).max() < 1e-3
