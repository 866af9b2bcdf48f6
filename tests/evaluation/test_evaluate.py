"""Evaluate: a saved bundle scores exactly what the in-memory model scored, on any layout."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TinyRun
from pneumonia.core.errors import DataError
from pneumonia.core.options import Scoring
from pneumonia.data.split import read_manifest
from pneumonia.evaluation.evaluate import evaluate, select_items
from pneumonia.evaluation.metrics import binary_metrics, headline, jsonable
from pneumonia.inference.loading import load_bundle


def test_round_trip_gives_the_training_metrics(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    result = evaluate(
        bundle,
        tiny_run.cfg.data.manifest,
        "val",
        tmp_path,
        Scoring(workers=1, show=False, n_boot=0),
    )
    stored = bundle.meta.validation
    for key, value in headline(result["metrics"]).items():
        assert value == pytest.approx(stored[key], abs=1e-9), key
    assert result["metrics"]["confusion_matrix"] == stored["confusion_matrix"]
    assert result["metrics"]["n"] == sum(
        r.split == "val" for r in read_manifest(tiny_run.cfg.data.manifest)
    )


def test_outputs_carry_the_numbers(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    result = evaluate(
        bundle, tiny_run.data, "test", tmp_path, Scoring(workers=1, show=False, n_boot=100)
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    with (tmp_path / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 == saved["metrics"]["n"]
    labels = np.array([r["label"] == "PNEUMONIA" for r in rows], int)
    probs = np.array([float(r["probability"]) for r in rows])
    recomputed = jsonable(headline(binary_metrics(labels, probs, bundle.threshold)))
    assert recomputed == pytest.approx(headline(saved["metrics"]), abs=1e-6)
    for key, (low, high) in saved["intervals"]["bootstrap"].items():
        assert low <= saved["metrics"][key] <= high, key
    assert saved["intervals"]["resampled"] == "patients"
    assert 0 <= saved["calibration"]["ece"] <= 1 and 0 <= saved["calibration"]["brier"] <= 1
    for name in ("roc.png", "pr.png", "confusion_matrix.png", "reliability.png"):
        assert Image.open(tmp_path / name).size[0] > 200


def test_a_folder_with_only_test(tiny_run: TinyRun, tmp_path: Path) -> None:
    only = Path(shutil.copytree(tiny_run.data / "chest_xray" / "test", tmp_path / "x" / "test"))
    (only / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    bundle = load_bundle(tiny_run.bundle)
    result = evaluate(
        bundle, tmp_path / "x", "test", tmp_path / "out", Scoring(workers=1, show=False, n_boot=0)
    )
    assert result["metrics"]["n"] == 16
    assert [u["path"].endswith("broken.jpeg") for u in result["unreadable"]] == [True]
    flat = shutil.copytree(only, tmp_path / "flat")
    items, source = select_items(flat, "test")
    assert len(items) == 17 and "no splits" in source


def test_missing_split_names_the_ones_present(tiny_run: TinyRun) -> None:
    with pytest.raises(DataError, match=r"no 'val' images \(splits present: test, train\)"):
        select_items(tiny_run.data, "val")


def test_borderline_answers_and_the_errors_among_them(tiny_run: TinyRun, tmp_path: Path) -> None:
    from conftest import band

    plain = evaluate(
        load_bundle(tiny_run.bundle), tiny_run.data, "test", tmp_path / "a", Scoring(1, False, 0)
    )
    assert plain["borderline"] is None
    with (tmp_path / "a" / "predictions.csv").open() as fh:
        assert {r["borderline"] for r in csv.DictReader(fh)} == {""}
    folder = band(shutil.copytree(tiny_run.bundle, tmp_path / "b"), logit=3.0)
    bundle = load_bundle(folder)
    scoring = Scoring(1, False, 0)
    near = evaluate(bundle, tiny_run.data, "test", tmp_path / "o", scoring)["borderline"]
    with (tmp_path / "o" / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    p = np.array([float(r["probability"]) for r in rows])
    sick = np.array([r["label"] == "PNEUMONIA" for r in rows])
    z, z_t = np.log(p / (1 - p)), np.log(bundle.threshold / (1 - bundle.threshold))
    inside = np.abs(z - z_t) < 3.0  # the band, in logits either side of the threshold's
    assert [r["borderline"] == "True" for r in rows] == inside.tolist()
    assert near is not None and near["answers"] == inside.sum() > 0
    assert near["low"] < bundle.threshold < near["high"]
    missed, alarms = sick & (p < bundle.threshold), ~sick & (p >= bundle.threshold)
    assert (near["missed"], near["missed_within"]) == (missed.sum(), (missed & inside).sum())
    assert near["false_alarms_within"] == (alarms & inside).sum() <= near["false_alarms"]
