"""train, evaluate, predict, ensemble, subtype, models and demo as a user types them, bad input."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import TinyRun, band, prepare_tiny, tiny_config
from pneumonia.cli import app
from pneumonia.core import bundle as bundle_module
from pneumonia.data.ood_corpus import MAKERS
from pneumonia.data.synthetic import oversized_png, save_dicom, save_image, synthetic_xray

runner = CliRunner()


def invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def overrides(tmp: Path) -> list[str]:
    cfg = tiny_config(tmp)
    return [
        f"data.manifest={cfg.data.manifest}",
        f"data.cache_dir={cfg.data.cache_dir}",
        "data.num_workers=0",
        "preprocess.image_size=32",
        "model.name=cnn_small",
        "model.pretrained=false",
        "train.epochs=1",
        "train.progress=false",
        f"train.out_dir={tmp / 'runs'}",
        "train.run_name=cli",
        "operating.rule=youden",
        f"audit.file={tmp / 'audit' / 'label_issues.csv'}",
    ]


def test_train_folds_as_a_user_types_it(tmp_path: Path) -> None:
    prepare_tiny(tmp_path, tiny_config(tmp_path))
    args = [*overrides(tmp_path)[:-1], "audit.file=null", "tracking.enabled=false"]
    result = invoke("train", *args, "--folds", 2)
    assert result.exit_code == 0, result.output
    assert "2 cross-fitted models; threshold" in result.output and "out-of-fold" in result.output
    assert (
        "Held-out validation" in result.output
        and "out-of-distribution guard fitted" in result.output
    )
    meta = json.loads((tmp_path / "runs" / "cli" / "bundle" / "model.json").read_text())
    assert meta["training"]["command"].endswith("--folds 2") and "model.onnx" in meta["files"]
    again = invoke("train", *args, "--folds", 1)
    assert again.exit_code != 0 and "--folds" in again.output


def test_train_then_evaluate(tmp_path: Path) -> None:
    prepare_tiny(tmp_path, tiny_config(tmp_path))
    result = invoke("train", *overrides(tmp_path))
    assert result.exit_code == 1 and "run `pneumonia data audit` first" in result.output
    audit = invoke("data", "audit", *overrides(tmp_path), "--out", tmp_path / "audit")
    assert audit.exit_code == 0, audit.output  # the README's order: split, prepare, audit, train
    result = invoke("train", *overrides(tmp_path))
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and "bundle:" in result.output
    bundle = tmp_path / "runs" / "cli" / "bundle"
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["training"]["command"].startswith("pneumonia train data.manifest=")
    assert f"MLflow run: {meta['training']['mlflow_run']}" in result.output
    assert "inference backend: ONNX Runtime" in result.output and "model.onnx" in meta["files"]
    assert "out-of-distribution guard fitted" in result.output

    out = tmp_path / "eval"
    args = ["--data", tmp_path / "data", "--out", out, "--workers", 1, "--bootstrap", 50]
    result = invoke("evaluate", bundle, *args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"]["n"] == 16 and f"{saved['metrics']['roc_auc']:.4f}" in result.output
    assert "95% CI" in result.output and "ECE" in result.output
    assert f"MLflow run: {saved['mlflow_run']}" in result.output
    again = invoke("evaluate", bundle, "--data", tmp_path / "data", "--out", out)
    assert again.exit_code == 1 and "--force" in again.output
    args += ["--force", "--no-track", "--tta"]
    result = invoke("evaluate", bundle, *args)
    saved = json.loads((out / "metrics.json").read_text())
    assert "MLflow run" not in result.output and saved["tta"] is True
    assert "borderline" not in result.output  # no band recorded
    band(bundle, logit=50.0)  # every answer within it
    result = invoke("evaluate", bundle, *args)
    near = json.loads((out / "metrics.json").read_text())["borderline"]
    assert near["answers"] == 16 and near["missed_within"] == near["missed"]
    assert "borderline (P in [" in result.output and "16 answers (100.0%)" in result.output

    manifest = tmp_path / "manifest.csv"
    args = ["--data", manifest, "--rule", "youden", "--out", tmp_path / "b2", "--workers", 1]
    result = invoke("threshold", bundle, *args)
    assert result.exit_code == 0, result.output
    assert "rule youden" in result.output and (tmp_path / "b2" / "model.safetensors").is_file()


def test_predict_writes_tables_and_pictures(tiny_run: TinyRun, tmp_path: Path) -> None:
    test_dir = tiny_run.data / "chest_xray" / "test"
    bad = tmp_path / "bad.jpeg"
    bad.write_text("this is text")
    out = tmp_path / "p"
    args = [tiny_run.bundle, f"{test_dir}/NORMAL/*", bad, "--out", out, "--show", "--workers", 1]
    result = invoke("predict", *args)
    assert result.exit_code == 0, result.output
    assert "not an image" in result.output
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and sum(bool(r["error"]) for r in rows) == 1
    payload = json.loads((out / "predictions.json").read_text())
    assert 0 < payload["threshold"] < 1 and len(payload["predictions"]) == 9
    pictures = sorted((out / "images").iterdir())
    assert len(pictures) == 8
    first = Image.open(pictures[0])
    assert first.mode == "RGB" and first.size[0] >= 32


def test_predict_marks_what_is_not_a_chest_xray(tmp_path: Path) -> None:
    """The shipped model on the issue's examples: a blank image, noise, a cartoon, and a real-
    looking X-ray; the CLI table, CSV, JSON and pictures all carry the guard's verdict."""
    rng = np.random.default_rng(0)
    images = {kind: MAKERS[kind](rng, 240, 280) for kind in ("blank", "noise", "cartoon")}
    for kind, gray in images.items():
        save_image(gray, tmp_path / "in" / f"{kind}.png")
    out = tmp_path / "p"
    result = invoke("predict", tmp_path / "in", "--out", out, "--show", "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "chest X-ray?" in result.output and "3 image(s) do not look like" in result.output
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["in_distribution"] for r in rows] == ["False"] * 3 and all(
        r["probability"] for r in rows
    )
    payload = json.loads((out / "predictions.json").read_text())
    assert payload["guard"]["active"] and payload["guard"]["threshold"] > 0
    assert all(p["in_distribution"] is False for p in payload["predictions"])
    assert len(list((out / "images").iterdir())) == 3


def test_predict_without_bundle_uses_the_default(
    tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_module, "DEFAULT_BUNDLE", tiny_run.bundle)
    image = next((tiny_run.data / "chest_xray" / "test" / "NORMAL").iterdir())
    result = invoke("predict", image, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "p" / "predictions.json").read_text())["bundle"] == str(
        tiny_run.bundle
    )
    args = ["--data", tiny_run.data, "--out", tmp_path / "e", "--bootstrap", 0, "--workers", 1]
    result = invoke("evaluate", *args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["bundle"] == str(
        tiny_run.bundle
    )


def test_models_lists_the_registry() -> None:
    result = invoke("models")
    assert all(name in result.output for name in ("cnn_small", "efficientnet_lite0", "vit_tiny"))


@pytest.fixture
def tampered(tiny_run: TinyRun, tmp_path: Path) -> Path:
    copy = Path(shutil.copytree(tiny_run.bundle, tmp_path / "tampered"))
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    return copy


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "model.name=resnet19"], "unknown model 'resnet19'"),
        (["train", "--resume", "{tmp}"], "no checkpoints/last.ckpt"),
        (["evaluate", "{tampered}", "--data", "{data}"], "altered since the bundle"),
        (["evaluate", "{bundle}", "--data", "{tmp}"], "unrecognised dataset layout"),
        (["evaluate", "{tmp}/nope", "--data", "{data}"], "no such bundle folder"),
        (["predict", "{bundle}", "{tmp}/*.png"], "no files match"),
        (["threshold", "{bundle}", "--data", "{data}", "--in-place", "--rule", "x"], "rule"),
        (["predict", "{bundle}", "{tmp}/gone.png", "--out", "{tmp}/p"], "file not found"),
    ],
)
def test_bad_input_is_a_clear_message(
    tiny_run: TinyRun, tampered: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    fill = {"tmp": tmp_path / "empty", "bundle": tiny_run.bundle, "tampered": tampered}
    filled = [a.format(**fill, data=tiny_run.data) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_demo_runs_every_stage_offline(tmp_path: Path) -> None:
    result = invoke("demo", "--workdir", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    for step in ("[1/6]", "[2/6]", "[3/6]", "[4/6] audit", "[5/6]", "[6/6]"):
        assert step in result.output
    assert (tmp_path / "demo" / "audit" / "index.html").is_file()
    meta = json.loads((tmp_path / "demo" / "runs" / "demo" / "bundle" / "model.json").read_text())
    assert meta["training"]["config"]["audit"]["file"].endswith("label_issues.csv")
    metrics = json.loads((tmp_path / "demo" / "evaluate" / "metrics.json").read_text())
    assert metrics["metrics"]["n"] == 80 and metrics["metrics"]["roc_auc"] > 0.9
    assert (tmp_path / "demo" / "runs" / "demo" / "bundle" / "model.safetensors").is_file()
    assert (tmp_path / "demo" / "predict" / "predictions.csv").is_file()
    from mlflow import MlflowClient

    store = MlflowClient(f"sqlite:///{tmp_path / 'demo' / 'mlruns.db'}")
    runs = store.search_runs([store.get_experiment_by_name("pneumonia").experiment_id])
    assert sorted(r.data.tags["pneumonia.command"] for r in runs) == ["evaluate", "train"]


def test_predict_answers_every_bad_input_and_keeps_the_rest(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    good = save_image(synthetic_xray("PNEUMONIA", 40, 50, rng), tmp_path / "good.png")
    save_image(synthetic_xray("NORMAL", 40, 50, rng), tmp_path / "alpha.png", "RGBA")
    (tmp_path / "zero.jpeg").write_bytes(b"")
    (tmp_path / "notes.jpeg").write_text("a text file named like an image")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    (tmp_path / "huge.png").write_bytes(oversized_png(30000))
    save_dicom(np.zeros((8, 8), np.uint16), tmp_path / "report.dcm", with_pixels=False)
    out = tmp_path / "p"
    result = invoke("predict", tiny_run.bundle, tmp_path, "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in csv.DictReader((out / "predictions.csv").open())}
    expected = {
        "zero.jpeg": "empty",
        "notes.jpeg": "not an image",
        "cut.png": "truncated",
        "huge.png": "decompression bomb",
        "report.dcm": "no pixel data",
    }
    for name, words in expected.items():
        assert words in rows[name]["error"], (name, rows[name])
    assert not rows["good.png"]["error"] and not rows["alpha.png"]["error"]
    assert 0 <= float(rows["alpha.png"]["probability"]) <= 1


def test_ensemble_then_predict_and_evaluate_with_it(tiny_run: TinyRun, tmp_path: Path) -> None:
    run = Path(tiny_run.summary["run_dir"])
    out = tmp_path / "ens"
    bad = invoke("ensemble", run, tiny_run.bundle, "--out", out, "--rule", "best")
    assert bad.exit_code != 0 and "invalid --rule 'best'" in bad.output and not out.exists()
    result = invoke("ensemble", run, tiny_run.bundle, "--out", out, "--rule", "youden")
    assert result.exit_code == 0, result.output
    assert "ensemble of 2" in result.output and (out / "model.safetensors").is_file()
    assert "ONNX model: verified; out-of-distribution guard: threshold" in result.output
    assert (out / "model.onnx").is_file() and (out / "guard.safetensors").is_file()
    again = invoke("ensemble", run, tiny_run.bundle, "--out", out)
    assert again.exit_code != 0 and "already exists" in again.output
    images = f"{tiny_run.data / 'chest_xray' / 'test'}/PNEUMONIA/*"
    predicted = invoke("predict", out, images, "--out", tmp_path / "p", "--workers", 1)
    assert predicted.exit_code == 0, predicted.output
    payload = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert payload["architecture"] == "ensemble" and len(payload["predictions"]) == 8
    assert payload["guard"]["active"] and "ONNX Runtime" in predicted.output
    assert all(p["in_distribution"] is not None for p in payload["predictions"])
    manifest = tiny_run.cfg.data.manifest
    evaluated = invoke(
        "evaluate", out, "--data", manifest, "--split", "val", "--out", tmp_path / "e"
    )
    assert evaluated.exit_code == 0, evaluated.output
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert saved["architecture"] == "ensemble" and saved["metrics"]["n"] > 0


def test_subtype_adds_the_head_then_predict_names_it(tiny_run: TinyRun, tmp_path: Path) -> None:
    out = tmp_path / "headed"
    manifest = tiny_run.cfg.data.manifest
    result = invoke("subtype", tiny_run.bundle, "--out", out, "--data", manifest, "--no-int8")
    assert result.exit_code == 0, result.output
    assert "subtype head fitted on" in result.output and "out-of-fold ROC-AUC" in result.output
    assert "validation: ROC-AUC" in result.output and (out / "model.onnx").is_file()
    meta = json.loads((out / "model.json").read_text())
    assert meta["training"]["subtype_head"]["command"].startswith("pneumonia subtype ")
    again = invoke("subtype", tiny_run.bundle, "--out", out)
    assert again.exit_code != 0 and "already exists" in again.output
    images = f"{tiny_run.data / 'chest_xray' / 'test'}/PNEUMONIA/*"
    predicted = invoke("predict", out, images, "--out", tmp_path / "p", "--workers", 1)
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads((tmp_path / "p" / "predictions.json").read_text())["predictions"]
    assert all((p["subtype"] is None) == (p["label"] == "NORMAL") for p in rows)
    assert all(0 <= p["subtype_probability"] <= 1 for p in rows)
