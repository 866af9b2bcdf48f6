"""The shipped default model: present, verified, small, and it reproduces its own card."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia.core.bundle import DEFAULT_BUNDLE, ONNX
from pneumonia.core.config import Config, load_config
from pneumonia.core.options import Scoring
from pneumonia.data.split import make_manifest, write_manifest
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.evaluation.evaluate import evaluate
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import predict_paths


def test_default_bundle_loads_and_is_small() -> None:
    bundle = load_bundle(None)
    assert bundle.path == DEFAULT_BUNDLE
    assert bundle.meta.architecture.name == "efficientnet_lite0"
    size = sum(p.stat().st_size for p in DEFAULT_BUNDLE.iterdir())
    assert size < 40 * 2**20  # weights, their verified ONNX copy and the guard (6.5 MB)
    assert ONNX in bundle.meta.files and load_bundle(None, "auto").backend in ("onnx", "int8")
    assert bundle.meta.validation["roc_auc"] >= 0.99
    assert bundle.guard is not None and load_bundle(None, "auto").guard is not None
    assert (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text().startswith("# Model card")


def test_default_bundle_was_trained_by_the_default_recipe() -> None:
    """The shipped model is what `pneumonia train` makes with configs/default.yaml (every
    setting that shapes the weights, but where files go and what the run is called), its
    operating point fitted by the rule configs/default.yaml names."""
    meta = load_bundle(None).meta
    shipped = Config.model_validate(meta.training["config"]).model_dump(mode="json")
    default = load_config(None, []).model_dump(mode="json")
    for cfg in (shipped, default):
        for section, key in [("data", "manifest"), ("data", "cache_dir"), ("train", "out_dir")]:
            cfg[section].pop(key)
        cfg["train"].pop("run_name")
        cfg["data"].pop("num_workers")  # speed only: auto is 0 on 2 cores, more elsewhere
    for section in ("data", "preprocess", "model", "train"):
        assert shipped[section] == default[section], section
    guard = default["guard"]  # fitted by `pneumonia guard` with the default settings
    assert meta.guard is not None and meta.guard.max_flag_rate == guard["max_flag_rate"]
    assert meta.guard.fitted_on["augmented_views"] == guard["augmented_views"]


def test_default_bundle_runs_under_the_real_files_contract() -> None:
    """Trained under the recipe's contract, then given the one that renders every image as
    the training copies were (`pneumonia recontract`, issue 34): the record says both."""
    meta = load_bundle(None).meta
    recipe = load_config(None, []).preprocess
    record = meta.training["recontracted"]
    assert record["previous_preprocessing"] == recipe.model_dump(mode="json")
    assert meta.preprocessing.resize == "stretch" and meta.preprocessing.render is not None
    assert (meta.preprocessing.render.side, meta.preprocessing.render.quality) == (224, 75)
    assert record["command"].startswith("pneumonia recontract")
    real = meta.validation["real_files"]  # checked on originals, as its card says
    assert set(real["renderings"]) >= {"original", "dicom_m1_16", "dicom_m2_12", "png16"}
    assert meta.guard is not None and meta.guard.fitted_on["rendered_views"] is True
    assert meta.preprocessing.render.blur > 0 and meta.guard.layout is not None  # C3L


def test_default_bundle_card_is_made_from_its_record() -> None:
    """The card beside the shipped weights says what its model.json says (it is written from
    it; a card left from an earlier code or record would mislead)."""
    from pneumonia.core.bundle import CARD, read_meta
    from pneumonia.core.card import model_card

    folder, meta = read_meta(None)
    assert (folder / CARD).read_text(encoding="utf-8") == model_card(meta)


def test_default_bundle_threshold_follows_the_default_rule() -> None:
    """Re-fitted after training by `pneumonia threshold ... --audit`: the rule, target,
    smoothing and the audited images left out are the ones configs/default.yaml names."""
    meta = load_bundle(None).meta
    rule = load_config(None, []).operating
    detail = meta.threshold.detail
    assert meta.threshold.rule == rule.rule
    assert detail["target_sensitivity"] == rule.target_sensitivity
    assert detail["smooth"] == rule.smooth and detail.get("views", []) == rule.views
    left_out = meta.data["left_out"]["operating"]
    assert detail["left_out"] == left_out["images"] > 0
    assert Path(left_out["file"]).name == load_config(None, []).audit.file.name  # type: ignore[union-attr]
    assert meta.calibration is not None and meta.calibration.fitted_on == "validation"


def test_default_bundle_predicts(tmp_path: Path) -> None:
    image = save_image(
        synthetic_xray("NORMAL", 300, 260, np.random.default_rng(0)), tmp_path / "x.png"
    )
    [row] = predict_paths(load_bundle(None), [str(image)], workers=1, show=False)
    assert row.error is None and 0.0 <= row.probability <= 1.0  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.shared
def test_default_bundle_reproduces_its_validation_metrics(
    shared_chest_xray: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(None)
    seed = bundle.meta.training["config"]["data"]["seed"]
    fraction = bundle.meta.training["config"]["data"]["val_fraction"]
    rows, _ = make_manifest(shared_chest_xray, fraction, seed, show=False)
    write_manifest(rows, tmp_path / "manifest.csv")
    result = evaluate(
        bundle, tmp_path / "manifest.csv", "val", tmp_path / "eval", Scoring(show=False, n_boot=0)
    )
    stored = bundle.meta.validation
    assert result["metrics"]["n"] == stored["n"]
    assert result["metrics"]["confusion_matrix"] == stored["confusion_matrix"]
    assert result["metrics"]["roc_auc"] == pytest.approx(stored["roc_auc"], abs=1e-4)
