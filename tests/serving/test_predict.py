"""Prediction tables and annotated copies: what a user keeps from `pneumonia predict`."""

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import TinyRun
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import Prediction
from pneumonia.serving.predict import annotate_all, guard_summary, write_tables


def test_tables_and_annotated_copies(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    image = save_image(
        synthetic_xray("NORMAL", 60, 90, np.random.default_rng(0)), tmp_path / "x y.png"
    )
    rows = [
        Prediction(str(image), 0.8, "PNEUMONIA", None, True, 1.2, "viral", 0.7),
        Prediction(str(tmp_path / "bad.png"), None, None, "not an image", None, None),
    ]
    csv_path, json_path = write_tables(rows, bundle, tmp_path / "out")
    table = list(csv.DictReader(csv_path.open()))
    assert [r["label"] for r in table] == ["PNEUMONIA", ""] and table[1]["error"] == "not an image"
    saved = json.loads(json_path.read_text())
    assert saved["threshold"] == bundle.threshold and len(saved["predictions"]) == 2
    drawn = annotate_all(rows, bundle.threshold, tmp_path / "pictures")
    assert len(drawn) == 1 and " " not in drawn[0].name  # the bad file has no picture
    with Image.open(drawn[0]) as img:
        assert img.size[0] >= 90  # the original at its own size, label written on it
    summary = guard_summary(bundle)
    assert summary["active"] is (bundle.guard is not None)
