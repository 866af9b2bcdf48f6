"""The shift suite on a tiny trained model: rows, worst case, files, determinism."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TinyRun
from pneumonia.core.errors import DataError
from pneumonia.core.options import Scoring
from pneumonia.evaluation.evaluate import evaluate
from pneumonia.evaluation.stress import stress
from pneumonia.inference.loading import load_bundle

SHIFTS = ["wide_1.5", "crop_70", "inverted", "noise_16"]


def test_stress_rows_files_and_clean_matches_evaluate(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    manifest = tiny_run.cfg.data.manifest
    args = {"seed": 3, "shifts": SHIFTS, "scoring": Scoring(workers=1, show=False, n_boot=30)}
    result = stress(bundle, manifest, "val", tmp_path / "a", **args)
    rows = result["shifts"]
    assert [r["shift"] for r in rows] == ["clean", *SHIFTS]
    clean = evaluate(
        bundle, manifest, "val", tmp_path / "e", Scoring(workers=1, show=False, n_boot=0)
    )
    assert rows[0]["roc_auc"] == pytest.approx(clean["metrics"]["roc_auc"])
    assert rows[0]["sensitivity"] == pytest.approx(clean["metrics"]["sensitivity"])
    for r in rows:
        assert r["delta_roc_auc"] == pytest.approx(r["roc_auc"] - rows[0]["roc_auc"])
        low, high = r["roc_auc_ci"]
        assert low <= r["roc_auc"] + 1e-9 and r["roc_auc"] <= high + 1e-9
    scored = [r for r in rows[1:] if r["scored"]]
    assert [r["shift"] for r in rows if not r["scored"]] == ["inverted"]
    worst = result["worst"]["roc_auc"]
    assert worst["value"] == min(r["roc_auc"] for r in scored) and worst["shift"] != "inverted"
    on_disk = json.loads((tmp_path / "a" / "stress.json").read_text())
    assert on_disk["shifts"] == json.loads(json.dumps(rows))
    assert len(list(csv.DictReader((tmp_path / "a" / "stress.csv").open()))) == len(rows)
    for name in ("stress.png", "shifts.png"):
        assert (tmp_path / "a" / name).stat().st_size > 1000
    saved = np.load(tmp_path / "a" / "stress_logits.npz")
    assert list(saved["names"]) == ["clean", *SHIFTS] and saved["logits"].shape[0] == len(rows)

    again = stress(bundle, manifest, "val", tmp_path / "b", **args)
    assert again["shifts"] == rows  # seeded: the same suite on every run


def test_stress_lists_unreadable_files_and_refuses_unknown_shifts(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    images = sorted(p for p in Path(tiny_run.data).rglob("*.jpeg") if p.parts[-3] == "test")
    assert images
    bad = tmp_path / "bad.jpeg"
    bad.write_text("not an image")
    table = tmp_path / "site.csv"
    lines = ["path,label"] + [f"{p},{p.parent.name}" for p in images] + [f"{bad},NORMAL"]
    table.write_text("\n".join(lines) + "\n")
    bundle = load_bundle(tiny_run.bundle)
    result = stress(
        bundle,
        table,
        "all",
        tmp_path / "s",
        shifts=["gamma_1.6"],
        scoring=Scoring(show=False, n_boot=200),
    )
    assert [u["path"] for u in result["unreadable"]] == [str(bad)]
    assert result["shifts"][0]["n"] == len(images)
    with pytest.raises(DataError, match="unknown shift"):
        stress(
            bundle,
            table,
            "all",
            tmp_path / "t",
            shifts=["warp_9"],
            scoring=Scoring(show=False, n_boot=200),
        )
