"""The subtype head end to end on synthetic data whose PNEUMONIA images show their subtype:
it trains, its bundle records it, it exports to ONNX with parity, and every answer (predict,
evaluate, the service, an ensemble) carries the subtype beside the unchanged screening one.
A single-output bundle keeps answering without it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import TinyRun, prepare_tiny, tiny_config
from pneumonia.core.config import OperatingConfig, TrainConfig
from pneumonia.core.errors import DataError, PneumoniaError
from pneumonia.core.options import Scoring
from pneumonia.data.split import read_manifest
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.evaluation.evaluate import evaluate
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import predict_paths
from pneumonia.inference.runtime import OnnxModel, network_heads
from pneumonia.modeling.classifier import XrayClassifier
from pneumonia.modeling.export import export_onnx, parity_inputs
from pneumonia.modeling.models import create_model
from pneumonia.monitoring.predlog import read_log
from pneumonia.serving.serve import Limits, create_app
from pneumonia.training.ensembling import build_ensemble
from pneumonia.training.subtype_head import add_subtype_head, fit_probe, folded_row, graft_row
from pneumonia.training.train import train

YOUDEN = OperatingConfig(rule="youden")  # tiny validation splits cannot aim at 0.99


@pytest.fixture(scope="module")
def subtype_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    tmp = tmp_path_factory.mktemp("subtype_run")
    cfg = tiny_config(tmp, "data.subtype=true")
    root = prepare_tiny(tmp, cfg, subtypes=True)
    return TinyRun(cfg, root, train(cfg, command="pytest"))


def test_the_subtype_loss_trains_the_second_output() -> None:
    """On one batch, a few steps lower the subtype loss; images without a known subtype
    (NORMAL, -1) do not enter it, whatever their second output says."""
    torch.manual_seed(0)
    cfg = TrainConfig(channels_last=False)
    module = XrayClassifier(create_model("cnn_small", num_classes=2), cfg, None, 1.0)
    s = torch.tensor([0, 1] * 4 + [-1] * 4)
    x = torch.randn(12, 1, 32, 32) + (s == 1).float()[:, None, None, None]  # viral: brighter
    out = module.outputs(x)
    moved = out.clone()
    moved[s < 0, 1] += 50.0
    assert torch.equal(module.subtype_term(out, s), module.subtype_term(moved, s))
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = module.subtype_term(module.outputs(x), s)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert module(x).shape == (12,)  # the screening logit alone, as before


def test_training_records_the_head(subtype_run: TinyRun) -> None:
    meta = json.loads((subtype_run.bundle / "model.json").read_text())
    assert meta["architecture"]["num_classes"] == 2
    record = meta["subtype"]
    assert record["labels"] == ["bacterial", "viral"] and record["threshold"] == 0.5
    val = record["validation"]
    pneumonia_val = meta["validation"]["positives"]
    assert val["metrics"]["n"] == pneumonia_val  # every synthetic PNEUMONIA name says
    assert 0 <= val["metrics"]["roc_auc"] <= 1 and len(val["intervals"]["roc_auc"]) == 2
    assert sum(map(sum, val["three_class"]["matrix"])) == meta["validation"]["n"]
    with (subtype_run.bundle.parent / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(0 <= float(r["val_subtype_auc"]) <= 1 for r in rows)


def test_a_dataset_without_subtype_names_is_refused(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "data.subtype=true")
    root = prepare_tiny(tmp_path, cfg)
    for path in (root / "chest_xray").rglob("*virus*"):
        path.unlink()  # the cache keeps them: rename the manifest's viral rows away instead
    rows = cfg.data.manifest.read_text().replace("_virus_", "_x_")
    cfg.data.manifest.write_text(rows)
    with pytest.raises(DataError, match=r"0 viral.*data\.subtype=false"):
        train(cfg, command="pytest")
    assert not (tmp_path / "runs" / "tiny" / "bundle").exists()


def test_onnx_keeps_both_outputs_within_parity(subtype_run: TinyRun, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(subtype_run.bundle, folder)
    info = export_onnx(load_bundle(folder), force=True)
    assert info["max_abs_diff_subtype_logit"] < 1e-4 and "N x 2" in info["output"]
    images = sorted(str(p) for p in (subtype_run.data / "chest_xray" / "test").rglob("*.jpeg"))
    on_torch = predict_paths(load_bundle(folder, "torch"), images, show=False)
    on_onnx = predict_paths(load_bundle(folder, "onnx"), images, show=False)
    for a, b in zip(on_torch, on_onnx, strict=True):
        assert a.subtype_probability == pytest.approx(b.subtype_probability, abs=1e-5)
        assert (a.label, a.subtype) == (b.label, b.subtype)
        assert (a.subtype is None) == (a.label == "NORMAL")


def test_evaluate_reports_the_subtype(subtype_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(subtype_run.bundle)
    result = evaluate(bundle, subtype_run.cfg.data.manifest, "val", tmp_path, Scoring(n_boot=50))
    section = result["subtype"]
    assert section["metrics"]["n"] == result["metrics"]["positives"]
    assert set(section["intervals"]) >= {"roc_auc", "accuracy", "sensitivity_viral"}
    with (tmp_path / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    pneumonia = [r for r in rows if r["label"] == "PNEUMONIA"]
    assert {r["subtype"] for r in pneumonia} == {"bacterial", "viral"}
    assert all(r["predicted_subtype"] == "" for r in rows if r["predicted"] == "NORMAL")


def test_the_service_answers_and_logs_the_subtype(subtype_run: TinyRun, tmp_path: Path) -> None:
    app = create_app(load_bundle(subtype_run.bundle), Limits(), log_path=tmp_path / "log.sqlite")
    image = save_image(
        synthetic_xray("PNEUMONIA", 64, 64, np.random.default_rng(1)), tmp_path / "a.png"
    )
    with TestClient(app) as client:
        answer = client.post("/predict", files={"files": ("a.png", image.read_bytes())}).json()
    result = answer["results"][0]
    [row] = read_log(tmp_path / "log.sqlite")
    assert (row.subtype, row.subtype_probability) == (
        result["subtype"], result["subtype_probability"])  # fmt: skip
    assert 0 <= result["subtype_probability"] <= 1
    expected = (
        None
        if result["label"] == "NORMAL"
        else ("viral" if result["subtype_probability"] >= 0.5 else "bacterial")
    )
    assert result["subtype"] == expected


def test_an_ensemble_of_two_headed_members_keeps_the_head(
    subtype_run: TinyRun, tiny_run: TinyRun, tmp_path: Path
) -> None:
    run = Path(subtype_run.summary["run_dir"])
    built = build_ensemble([run, subtype_run.bundle], tmp_path / "ens", cfg=YOUDEN, show=False)
    meta = json.loads((tmp_path / "ens" / "model.json").read_text())
    assert meta["architecture"]["num_classes"] == 2 and meta["subtype"]["validation"]["metrics"]
    member = load_bundle(subtype_run.bundle)
    images = sorted(str(p) for p in (subtype_run.data / "chest_xray" / "test").rglob("*.jpeg"))
    alone = predict_paths(member, images, show=False)
    both = predict_paths(load_bundle(built["bundle"]), images, show=False)
    for a, b in zip(alone, both, strict=True):  # the same member twice: the same subtype answer
        assert a.subtype_probability == pytest.approx(b.subtype_probability, abs=1e-5)
    mixed = build_ensemble(
        [subtype_run.bundle, tiny_run.bundle],
        tmp_path / "mixed",
        subtype_run.cfg.data.manifest,
        cfg=YOUDEN,
        show=False,
    )
    assert json.loads((Path(mixed["bundle"]) / "model.json").read_text())["subtype"] is None


def test_a_single_output_bundle_answers_without_a_subtype(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    bundle = load_bundle(tiny_run.bundle)
    assert bundle.meta.subtype is None and bundle.meta.architecture.num_classes == 1
    images = sorted(str(p) for p in (tiny_run.data / "chest_xray" / "test").rglob("*.jpeg"))
    found = predict_paths(bundle, images, show=False)
    assert all(p.label and p.subtype is None and p.subtype_probability is None for p in found)
    result = evaluate(bundle, tiny_run.cfg.data.manifest, "val", tmp_path, Scoring(n_boot=0))
    assert result["subtype"] is None


def test_compare_and_report_show_the_subtype(
    subtype_run: TinyRun, tiny_run: TinyRun, tmp_path: Path
) -> None:
    from pneumonia.evaluation.compare import compare
    from pneumonia.evaluation.report import report

    manifest = subtype_run.cfg.data.manifest
    runs = [Path(subtype_run.summary["run_dir"]), tiny_run.bundle]
    result = compare(
        runs, manifest, "val", tmp_path / "c", Scoring(workers=1, show=False, n_boot=50)
    )
    headed, plain = result["models"]
    assert 0 <= headed["subtype_roc_auc"] <= 1 and "subtype_roc_auc" not in plain
    table = (tmp_path / "c" / "comparison.md").read_text()
    assert "Subtype output" in table and f"| {headed['model']} | " in table.split("Subtype")[1]
    bundle = load_bundle(subtype_run.bundle)
    page = report(
        bundle, manifest, "val", tmp_path / "r", Scoring(workers=1, show=False, n_boot=50)
    )
    html = page.read_text()
    assert "Subtype: bacterial or viral" in html and "sensitivity_viral" in html
    plain_page = report(
        load_bundle(tiny_run.bundle), manifest, "val", tmp_path / "p", Scoring(show=False, n_boot=0)
    )
    assert "Subtype: bacterial or viral" not in plain_page.read_text()


# `pneumonia subtype`: the head fitted on a trained one-output network's frozen features.


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """A one-output model (no head) trained on data whose images show their subtype, with its
    ONNX model, as a shipped bundle has one."""
    tmp = tmp_path_factory.mktemp("plain_run")
    cfg = tiny_config(tmp, "train.export_onnx=true")
    root = prepare_tiny(tmp, cfg, subtypes=True)
    return TinyRun(cfg, root, train(cfg, command="pytest"))


@pytest.fixture(scope="module")
def grafted(plain_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("grafted") / "bundle"
    return add_subtype_head(plain_run.bundle, out, plain_run.cfg.data.manifest, int8=False)


def test_the_folded_head_is_the_fitted_probe() -> None:
    """One linear row on the raw features gives the standardised regression's logit."""
    rng = np.random.default_rng(0)
    feats = rng.normal(3.0, [0.5, 2.0, 10.0, 1.0], size=(80, 4))
    y = (feats[:, 0] + 0.1 * feats[:, 2] + rng.normal(0, 0.5, 80) > 4).astype(int)
    fitted = fit_probe(feats, y, [f"p{i // 2}" for i in range(80)])
    w, b = folded_row(fitted)
    np.testing.assert_allclose(feats @ w + b, fitted.decision_function(feats), atol=1e-9)


def test_the_head_leaves_the_screening_answer_alone(
    plain_run: TinyRun, grafted: dict[str, Any]
) -> None:
    """Same screening logits on both backends, same threshold, calibration and guard; the
    second output is the fitted row on the pooled features."""
    source, out = plain_run.bundle, Path(grafted["bundle"])
    before = json.loads((source / "model.json").read_text())
    after = json.loads((out / "model.json").read_text())
    assert after["architecture"]["num_classes"] == 2 and before["subtype"] is None
    for key in ("threshold", "calibration", "guard", "reference", "preprocessing"):
        assert after[key] == before[key]
    assert (out / "guard.safetensors").read_bytes() == (source / "guard.safetensors").read_bytes()
    x = parity_inputs(load_bundle(out, "torch")).numpy()
    for backend in ("torch", "onnx"):
        old, _ = network_heads(load_bundle(source, backend).model, x)
        new, feats = network_heads(load_bundle(out, backend).model, x)
        assert new.shape == (len(x), 2) and feats is not None
        np.testing.assert_allclose(new[:, 0], old[:, 0], atol=1e-6)
    assert after["exports"]["onnx"]["max_abs_diff_subtype_logit"] < 1e-4


def test_the_head_is_judged_on_validation_and_out_of_fold(
    plain_run: TinyRun, grafted: dict[str, Any]
) -> None:
    meta = json.loads((Path(grafted["bundle"]) / "model.json").read_text())
    record = meta["subtype"]["validation"]
    rows = [r for r in read_manifest(plain_run.cfg.data.manifest) if r.label == "PNEUMONIA"]
    in_val = sum(r.split == "val" for r in rows)
    assert record["metrics"]["n"] == in_val
    assert record["out_of_fold"]["n"] == sum(r.split in ("train", "val") for r in rows)
    low, high = record["out_of_fold"]["interval"]
    assert low <= record["out_of_fold"]["roc_auc"] <= high
    assert grafted["images"] == sum(r.split == "train" for r in rows)
    assert "logistic regression on the frozen pooled features" in meta["subtype"]["trained_on"]
    card = (Path(grafted["bundle"]) / "MODEL_CARD.md").read_text()
    assert "## Subtype (bacterial vs viral" in card and "Cross-fitted" in card
    images = sorted(str(p) for p in (plain_run.data / "chest_xray" / "test").rglob("*.jpeg"))
    answers = predict_paths(load_bundle(grafted["bundle"]), images, show=False)
    assert all((p.subtype is None) == (p.label == "NORMAL") for p in answers)
    assert all(0 <= p.subtype_probability <= 1 for p in answers)


def test_the_int8_graft_keeps_the_screening_path(plain_run: TinyRun, tmp_path: Path) -> None:
    """On a quantized model whose last layer stays float, the graft changes only the row it
    adds: the screening column is the source int8 model's own."""
    from pneumonia.training.quantize import RECIPE, quantize_file

    source = load_bundle(plain_run.bundle, "onnx")
    x = parity_inputs(source).numpy()
    quantize_file(source.model.path, tmp_path / "q.onnx", [x[i : i + 1] for i in range(4)], RECIPE)
    w, b = np.linspace(-1, 1, 128).astype(np.float32), 0.25
    try:
        graft_row(tmp_path / "q.onnx", tmp_path / "g.onnx", w, b)
    except PneumoniaError:  # its last layer was quantized: the graft says so instead
        pytest.skip("this tiny network's last layer was quantized")
    old, _ = OnnxModel(tmp_path / "q.onnx").outputs(x)
    new, feats = OnnxModel(tmp_path / "g.onnx").outputs(x)
    assert feats is not None and feats.shape[1] == len(w)
    np.testing.assert_array_equal(new[:, 0], old.reshape(len(x), -1)[:, 0])
    np.testing.assert_allclose(new[:, 1], feats @ w + b, rtol=1e-4, atol=1e-4)


def test_what_cannot_take_a_head_is_refused(
    plain_run: TinyRun, subtype_run: TinyRun, grafted: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(PneumoniaError, match="already exists"):
        add_subtype_head(plain_run.bundle, Path(grafted["bundle"]))
    with pytest.raises(PneumoniaError, match="second output already"):
        add_subtype_head(subtype_run.bundle, tmp_path / "again")
    with pytest.raises(PneumoniaError, match="no such manifest"):
        add_subtype_head(plain_run.bundle, tmp_path / "x", tmp_path / "missing.csv")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(plain_run.cfg.data.manifest.read_text().replace("_virus_", "_x_"))
    with pytest.raises(DataError, match="0 viral"):
        add_subtype_head(plain_run.bundle, tmp_path / "y", manifest)
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_the_cam_of_a_two_output_bundle_explains_the_screening_answer(
    plain_run: TinyRun, grafted: dict[str, Any], method: str
) -> None:
    """The head adds a row after the pooled features, so the screening answer's CAM is the
    source network's own, whatever the subtype row says."""
    from pneumonia.serving.explain import explain_image

    image = next((plain_run.data / "chest_xray" / "test" / "PNEUMONIA").glob("*.jpeg"))
    plain = explain_image(load_bundle(plain_run.bundle, "torch"), str(image), method)
    headed = explain_image(load_bundle(grafted["bundle"], "torch"), str(image), method)
    assert headed.probability == pytest.approx(plain.probability, abs=1e-6)
    np.testing.assert_allclose(headed.cam, plain.cam, atol=1e-4)
    assert float(headed.cam.max()) > 0


def test_evaluate_without_subtype_names_reports_no_subtype(
    plain_run: TinyRun, grafted: dict[str, Any], tmp_path: Path
) -> None:
    """A headed bundle on images whose names do not give the subtype: the screening metrics,
    and no subtype section (not a crash)."""
    folder = tmp_path / "unnamed"
    for i, path in enumerate(sorted((plain_run.data / "chest_xray" / "test").rglob("*.jpeg"))):
        target = folder / path.parent.name / f"{i}.jpeg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    result = evaluate(
        load_bundle(grafted["bundle"]), folder, "test", tmp_path / "e", Scoring(n_boot=0)
    )
    assert result["subtype"] is None and result["metrics"]["n"] == 16


def test_no_int8_means_no_int8_copy_even_from_a_source_that_has_one(
    plain_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`int8=False` (`--no-int8`) makes no int8 attempt, not even the graft of a source's
    passing copy (here a source said to have one)."""
    import pneumonia.training.subtype_head as subtype_head

    monkeypatch.setattr(subtype_head, "int8_state", lambda meta: (True, True))
    out = tmp_path / "bundle"
    add_subtype_head(plain_run.bundle, out, plain_run.cfg.data.manifest, int8=False)
    meta = json.loads((out / "model.json").read_text())
    assert "int8" not in meta["exports"] and not (out / "model.int8.onnx").exists()
    assert "onnx" in meta["exports"]
