"""`train --folds K`: folds of the training split grouped by patient, K models, their
out-of-fold predictions for the operating point, and their ensemble judged on the held-out
validation split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import prepare_tiny, tiny_config
from pneumonia.core.errors import DataError
from pneumonia.data.split import Row, fold_manifests, read_manifest
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import check_operating_point, predict_paths
from pneumonia.training.crossfit import train_folds


def rows_of(patients: dict[str, int], split: str = "train") -> list[Row]:
    """Two images per patient; `patients` maps a label to how many patients have it."""
    return [
        Row(
            f"{split}/{label}/{p}_{i}.png",
            label,
            f"{split}{label}{p}",
            split,
            f"{split}{label}{p}{i}",
        )
        for label, n in patients.items()
        for p in range(n)
        for i in range(2)
    ]


def test_every_training_image_is_held_out_exactly_once_with_its_patient() -> None:
    rows = rows_of({"NORMAL": 9, "PNEUMONIA": 15}) + rows_of({"NORMAL": 2}, "val")
    rows += rows_of({"PNEUMONIA": 1}, "test")
    folds = fold_manifests(rows, 3, seed=0)
    held = Counter(r.path for fold in folds for r in fold if r.split == "val")
    assert set(held) == {r.path for r in rows if r.split == "train"} and set(held.values()) == {1}
    for fold in folds:
        sides = {}
        for r in fold:
            sides.setdefault(r.patient, set()).add(r.split)
        assert all(len(s) == 1 for s in sides.values())  # a patient on one side only
        assert {r.path for r in fold if r.split == "test"} == {
            r.path for r in rows if r.split == "val"
        }  # validation held out of every fold; the real test split left out
        assert Counter(r.label for r in fold if r.split == "val")["NORMAL"] >= 2


def test_too_few_patients_for_the_folds_is_refused() -> None:
    with pytest.raises(DataError, match="5 folds need at least 5 patients of each class"):
        fold_manifests(rows_of({"NORMAL": 3, "PNEUMONIA": 9}), 5, seed=0)


def test_train_folds_ships_an_ensemble_fitted_out_of_fold(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "train.export_onnx=true")
    root = prepare_tiny(tmp_path, cfg)
    rows = read_manifest(cfg.data.manifest)
    summary = train_folds(cfg, 3, command="pytest")
    run = Path(summary["run_dir"])
    assert sorted(p.name for p in run.glob("fold*") if p.is_dir()) == ["fold0", "fold1", "fold2"]
    meta = json.loads((Path(summary["bundle"]) / "model.json").read_text())
    assert len(meta["architecture"]["members"]) == 3
    assert meta["threshold"]["detail"]["on"] == "out-of-fold"
    fitted = meta["threshold"]["detail"]["out_of_fold"]
    train_rows = [r for r in rows if r.split == "train"]
    assert fitted["images"] == len(train_rows)  # every training image, once
    assert fitted["positives"] == sum(r.label == "PNEUMONIA" for r in train_rows)
    assert meta["validation"]["n"] == sum(r.split == "val" for r in rows)  # the held-out split
    assert summary["onnx"] and meta["guard"] is not None
    images = sorted(str(p) for p in (root / "chest_xray" / "test").rglob("*.jpeg"))
    bundle = load_bundle(summary["bundle"])
    assert check_operating_point(bundle)  # an out-of-fold threshold counts as held out
    answers = predict_paths(bundle, images, show=False)
    assert all(a.label and a.in_distribution is not None for a in answers)
