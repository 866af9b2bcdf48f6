"""Re-tuning a bundle: new threshold and calibration from validation, weights untouched."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import TinyRun, band
from pneumonia.core.config import OperatingConfig
from pneumonia.core.errors import DataError, PneumoniaError
from pneumonia.core.options import Scoring
from pneumonia.evaluation.evaluate import evaluate
from pneumonia.evaluation.tune import retune
from pneumonia.inference.loading import load_bundle


def test_retune_writes_a_new_bundle_that_evaluate_agrees_with(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    bundle = load_bundle(tiny_run.bundle)
    manifest = tiny_run.cfg.data.manifest
    cfg = OperatingConfig(rule="target_sensitivity", target_sensitivity=0.9)
    result = retune(
        bundle, manifest, "val", cfg, out=tmp_path / "b", scoring=Scoring(workers=1, show=False)
    )
    new = load_bundle(tmp_path / "b")  # the weights' hash still verifies
    assert new.meta.threshold.rule == "target_sensitivity"
    assert new.meta.threshold.detail["previous"]["rule"] == "youden"
    assert new.meta.validation["sensitivity"] >= 0.9
    assert new.temperature == result["calibration"].temperature
    scored = evaluate(
        new, manifest, "val", tmp_path / "e", Scoring(workers=1, show=False, n_boot=0)
    )
    assert scored["metrics"]["confusion_matrix"] == new.meta.validation["confusion_matrix"]
    rows = list(csv.DictReader((tmp_path / "e" / "predictions.csv").open()))
    reference = new.meta.reference["probability"]  # monitor's reference, at the new calibration
    assert reference == pytest.approx([float(r["probability"]) for r in rows], abs=1e-5)
    assert new.guard is not None  # the guard's file travelled with the new bundle
    assert load_bundle(tiny_run.bundle).meta == bundle.meta  # the original is unchanged


def test_retune_in_place_and_refusals(tiny_run: TinyRun, tmp_path: Path) -> None:
    copy = band(Path(shutil.copytree(tiny_run.bundle, tmp_path / "copy")))
    bundle = load_bundle(copy)
    manifest = tiny_run.cfg.data.manifest
    cfg = OperatingConfig(rule="fixed", fixed=0.3, calibrate=False)
    with pytest.raises(PneumoniaError, match="--out NEW_FOLDER or --in-place"):
        retune(bundle, manifest, "val", cfg, scoring=Scoring(workers=1, show=False))
    with pytest.raises(DataError, match="never on test"):
        retune(bundle, manifest, "test", cfg, in_place=True, scoring=Scoring(workers=1, show=False))
    retune(bundle, manifest, "val", cfg, in_place=True, scoring=Scoring(workers=1, show=False))
    meta = json.loads((copy / "model.json").read_text())
    assert meta["threshold"]["value"] == 0.3 and meta["calibration"] is None
    assert meta["borderline"] is None  # measured at the old calibration: to be measured again
    assert "rule fixed" in (copy / "MODEL_CARD.md").read_text()


def test_retune_over_shifted_views_records_them(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    manifest = tiny_run.cfg.data.manifest
    views = ["wide_1.33", "crop_85"]
    cfg = OperatingConfig(rule="youden", views=views, pool="worst")
    retune(bundle, manifest, "val", cfg, out=tmp_path / "v", scoring=Scoring(workers=1, show=False))
    detail = load_bundle(tmp_path / "v").meta.threshold.detail
    assert detail["views"] == ["clean", *views] and detail["pool"] == "worst"
    assert set(detail["per_view"]) == {"clean", *views}
    assert load_bundle(tmp_path / "v").threshold <= detail["clean_only_value"]
    with pytest.raises(PneumoniaError, match="--view or --tta"):
        retune(
            bundle, manifest, "val", cfg, out=tmp_path / "w", scoring=Scoring(show=False, tta=True)
        )


def test_training_chooses_the_threshold_over_views(tmp_path: Path) -> None:
    from conftest import prepare_tiny, tiny_config
    from pneumonia.training.train import train

    cfg = tiny_config(tmp_path, "train.epochs=1", "operating.views=[wide_1.5]")
    prepare_tiny(tmp_path, cfg)
    summary = train(cfg, command="pytest")
    detail = load_bundle(summary["bundle"]).meta.threshold.detail
    assert detail["views"] == ["clean", "wide_1.5"] and detail["pool"] == "pooled"
    meta = load_bundle(summary["bundle"]).meta
    assert detail["per_view"]["clean"]["positives"] == meta.validation["positives"]
