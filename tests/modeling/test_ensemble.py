"""Ensemble bundles: combine rule, round trip, tamper checks, ONNX parity, serve, explain."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from conftest import prepare_tiny, tiny_config
from pneumonia.core.config import OperatingConfig
from pneumonia.core.errors import BundleError, PneumoniaError
from pneumonia.core.options import Scoring
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import read_manifest
from pneumonia.data.synthetic import synthetic_xray
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.ensemble import EnsembleModel
from pneumonia.modeling.export import export_onnx, parity_inputs
from pneumonia.serving.explain import explain_image
from pneumonia.serving.serve import Limits, create_app
from pneumonia.training.ensembling import build_ensemble
from pneumonia.training.train import train


@dataclass
class Members:
    small: Path  # cnn_small at 32 px
    deep: Path  # cnn_deep at 40 px, its own normalisation
    manifest: Path
    data: Path


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Members:
    tmp = tmp_path_factory.mktemp("ensemble")
    first = tiny_config(tmp, "train.epochs=1")
    root = prepare_tiny(tmp, first)
    second = tiny_config(
        tmp,
        "train.epochs=1",
        "train.run_name=deep",
        "model.name=cnn_deep",
        "preprocess.image_size=40",
        "preprocess.mean=0.5",
        "preprocess.std=0.25",
    )
    rows = read_manifest(second.data.manifest)
    prepare_cache(rows, second.data.cache_dir, second.preprocess, workers=1, show=False)
    small, deep = train(first)["run_dir"], train(second)["bundle"]
    return Members(Path(small), Path(deep), first.data.manifest, root)


@pytest.fixture(scope="module")
def ensemble(members: Members, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "ens"
    cfg = OperatingConfig(rule="youden")  # the tiny validation split has few positives
    build_ensemble([members.small, members.deep], out, cfg=cfg, show=False, command="pytest")
    return out


def test_the_logit_is_the_mean_of_calibrated_member_logits(members: Members) -> None:
    member = load_bundle(members.small / "bundle")
    both = EnsembleModel(
        [member.model, member.model], [member.contract] * 2, [2.0, 4.0], member.contract
    ).eval()
    x = parity_inputs(member)
    with torch.inference_mode():
        alone = member.model(x)
        assert torch.allclose(both(x), (alone / 2.0 + alone / 4.0) / 2, atol=1e-6)


def test_members_see_their_own_size_and_normalisation(members: Members, ensemble: Path) -> None:
    ens, deep = load_bundle(ensemble), load_bundle(members.deep)
    assert ens.contract.image_size == 40  # the largest member's contract
    x = parity_inputs(ens)  # already in deep's contract: deep sees it unchanged
    with torch.inference_mode():
        inside = ens.model.members[1](x * ens.model.scales[1] + ens.model.shifts[1])
        assert torch.allclose(inside, deep.model(x), atol=1e-6)
    assert ens.model.scales[1] == pytest.approx(1.0) and ens.model.shifts[1] == pytest.approx(0.0)
    assert ens.model.scales[0] != pytest.approx(1.0)  # the small member is renormalised


def test_bundle_records_members_and_its_own_operating_point(
    members: Members, ensemble: Path
) -> None:
    meta = json.loads((ensemble / "model.json").read_text())
    arch = meta["architecture"]
    assert arch["name"] == "ensemble" and arch["combine"] == "mean_calibrated_logit"
    assert [m["name"] for m in arch["members"]] == ["cnn_small", "cnn_deep"]
    deep_meta = json.loads((members.deep / "model.json").read_text())
    assert arch["members"][1]["source_sha256"] == deep_meta["files"]["model.safetensors"]["sha256"]
    assert arch["members"][1]["temperature"] == deep_meta["calibration"]["temperature"]
    assert meta["threshold"]["rule"] == "youden" and 0 < meta["threshold"]["value"] < 1
    assert meta["validation"]["n"] > 0 and 0 <= meta["validation"]["roc_auc"] <= 1
    card = (ensemble / "MODEL_CARD.md").read_text()
    assert "Ensemble of 2 (mean_calibrated_logit)" in card
    assert (
        "Member 2: `cnn_deep`" in card
        and deep_meta["files"]["model.safetensors"]["sha256"][:12] in card
    )


def test_tampering_with_any_member_is_caught(ensemble: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ens"
    shutil.copytree(ensemble, copy)
    state = load_file(str(copy / "model.safetensors"))
    key = next(k for k in state if k.startswith("members.1."))
    state[key] = state[key] + 1
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(BundleError, match="altered"):
        load_bundle(copy)
    shutil.rmtree(copy)
    shutil.copytree(ensemble, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["architecture"]["members"][0]["temperature"] *= 2
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="edited"):
        load_bundle(copy)


def test_onnx_export_matches_pytorch(ensemble: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(ensemble, tmp_path / "ens")
    built = load_bundle(tmp_path / "ens", "torch")  # build_ensemble exported it already
    assert built.meta.exports["onnx"]["max_abs_diff_logit"] < 1e-4
    info = export_onnx(built, force=True)
    assert info["max_abs_diff_logit"] < 1e-4


def test_serve_and_explain_take_an_ensemble(ensemble: Path, tmp_path: Path) -> None:
    from PIL import Image

    bundle = load_bundle(ensemble)
    image = synthetic_xray("PNEUMONIA", 64, 56, np.random.default_rng(0))
    Image.fromarray(image).save(tmp_path / "x.png")
    client = TestClient(create_app(bundle, Limits()))
    with (tmp_path / "x.png").open("rb") as fh:
        response = client.post("/predict", files={"files": ("x.png", fh, "image/png")})
    assert response.status_code == 200
    [answer] = response.json()["results"]
    expl = explain_image(bundle, str(tmp_path / "x.png"))
    assert answer["probability"] == pytest.approx(expl.probability, abs=1e-5)
    assert expl.cam.shape == image.shape and 0 <= expl.cam.min() <= expl.cam.max() <= 1


def test_bad_ensembles_are_refused(members: Members, ensemble: Path, tmp_path: Path) -> None:
    with pytest.raises(PneumoniaError, match="at least two"):
        build_ensemble([members.small], tmp_path / "one", show=False)
    with pytest.raises(PneumoniaError, match="already exists"):
        build_ensemble([members.small, members.deep], ensemble, show=False)
    with pytest.raises(PneumoniaError, match="ensemble already"):
        build_ensemble([ensemble, members.deep], tmp_path / "nested", show=False)
    with pytest.raises(PneumoniaError, match="never on test"):
        build_ensemble([members.small, members.deep], tmp_path / "t", split="test", show=False)
    assert not (tmp_path / "one").exists() and not (tmp_path / "t").exists()


def test_threshold_compare_report_and_stress_take_an_ensemble(
    members: Members, ensemble: Path, tmp_path: Path
) -> None:
    from pneumonia.evaluation.compare import compare
    from pneumonia.evaluation.report import report
    from pneumonia.evaluation.stress import stress
    from pneumonia.evaluation.tune import retune

    bundle = load_bundle(ensemble)
    cfg = OperatingConfig(rule="cost", cost_ratio=3.0)
    tuned = retune(
        bundle,
        members.manifest,
        "val",
        cfg,
        out=tmp_path / "tuned",
        scoring=Scoring(workers=1, show=False),
    )
    assert load_bundle(tmp_path / "tuned").meta.threshold.rule == "cost"
    assert tuned["validation"]["n"] == bundle.meta.validation["n"]
    table = compare(
        [ensemble, members.deep],
        members.manifest,
        "val",
        tmp_path / "cmp",
        Scoring(workers=1, show=False, n_boot=20),
    )
    assert [m["architecture"] for m in table["models"]] == ["ensemble", "cnn_deep"]
    report(
        bundle, members.manifest, "val", tmp_path / "rep", Scoring(workers=1, show=False, n_boot=20)
    )
    assert "ensemble" in (tmp_path / "rep" / "report.html").read_text()
    result = stress(
        bundle,
        members.manifest,
        "val",
        tmp_path / "st",
        shifts=["crop_70"],
        scoring=Scoring(n_boot=0, workers=1, show=False),
    )
    assert [r["shift"] for r in result["shifts"]] == ["clean", "crop_70"]
