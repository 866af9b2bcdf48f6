"""The label audit: confident learning on out-of-fold probabilities finds flipped labels."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import prepare_tiny, tiny_config
from pneumonia.cli import app
from pneumonia.core import LABELS
from pneumonia.core.errors import PneumoniaError
from pneumonia.data.split import Row, read_manifest
from pneumonia.evaluation.audit import (
    AuditSettings,
    audit_rows,
    left_out_record,
    read_issues,
    write_audit,
)


def _clusters(n: int = 300, flips: int = 6, seed: int = 0) -> tuple[list[Row], np.ndarray, set]:
    """Two separable Gaussian clusters of features, 3 images a patient, `flips` labels wrong."""
    rng = np.random.default_rng(seed)
    truth = rng.permutation(np.arange(n) % 2)
    features = rng.normal(0, 1, (n, 16))
    features[:, :8] += 3.0 * truth[:, None]  # 8 informative dimensions, 8 of noise
    flipped = set(rng.choice(n, flips, replace=False).tolist())
    rows = []
    for i in range(n):
        label = LABELS[1 - truth[i]] if i in flipped else LABELS[truth[i]]
        split = "val" if i % 5 == 0 else "train"
        rows.append(Row(f"img{i}.png", label, f"p{i // 3}", split, f"{i:064x}"))
    return rows, features, flipped


def test_audit_finds_labels_flipped_on_purpose() -> None:
    rows, features, flipped = _clusters()
    records, summary = audit_rows(rows, features, AuditSettings(folds=5))
    flagged = {int(r["path"][3:-4]) for r in records if r["issue"]}
    # confident learning is conservative: no clean image flagged, most flips found
    assert flagged <= flipped and len(flagged) >= len(flipped) - 1
    ranked_first = {int(r["path"][3:-4]) for r in records[: len(flipped)]}
    assert ranked_first == flipped  # the ranking puts every flip before every clean image
    assert summary["issues"] == len(flagged) and summary["images"] == len(rows)
    per_split = sum(c["issues"] for by in summary["counts"].values() for c in by.values())
    assert per_split == len(flagged) and summary["out_of_fold_roc_auc"] > 0.9
    assert [r["rank"] for r in records] == list(range(1, len(rows) + 1))
    assert all(a["self_confidence"] <= b["self_confidence"] for a, b in itertools.pairwise(records))


def test_audit_refuses_a_class_too_small_to_cross_fit() -> None:
    rows, features, _ = _clusters(n=40)
    rows = [r if r.label == LABELS[1] or i < 4 else None for i, r in enumerate(rows)]
    kept = [i for i, r in enumerate(rows) if r is not None]
    with pytest.raises(PneumoniaError, match="at least 10 images of each class"):
        audit_rows([rows[i] for i in kept], features[kept], AuditSettings())  # type: ignore[misc]


def _audit_file(tmp_path: Path, rows: list[Row], flagged: set[int]) -> Path:
    records = [
        {"rank": i + 1, "path": r.path, "sha256": r.sha256, "split": r.split,
         "patient": r.patient, "label": r.label, "issue": i in flagged, "self_confidence": 0.5,
         "p_pneumonia": 0.5, "suggested": r.label}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    summary = {"images": len(rows), "issues": len(flagged), "counts": {},
               "out_of_fold_roc_auc": 0.9, "method": "by hand"}  # fmt: skip
    return write_audit(records, summary, tmp_path / "audit")


def test_read_issues_keeps_the_flagged_and_refuses_other_data(tmp_path: Path) -> None:
    rows, _, _ = _clusters(n=30)
    table = _audit_file(tmp_path, rows, {1, 2, 7})
    found = read_issues(table, rows)
    assert set(found) == {(rows[i].sha256, rows[i].label) for i in (1, 2, 7)}
    relabelled = [Row(r.path, LABELS[0], r.patient, r.split, r.sha256) for r in rows]
    with pytest.raises(PneumoniaError, match="made from other data"):
        read_issues(table, [r for r in relabelled if r.label != rows[int(r.path[3:-4])].label])
    with pytest.raises(PneumoniaError, match="run `pneumonia data audit` first"):
        read_issues(tmp_path / "nowhere.csv", rows)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(PneumoniaError, match="not a label audit"):
        read_issues(tmp_path / "other.csv", rows)


def test_left_out_record_says_which_and_why(tmp_path: Path) -> None:
    rows, _, _ = _clusters(n=30)
    table = _audit_file(tmp_path, rows, {0, 1, 5})  # 0 and 5 are validation, 1 training
    flagged = read_issues(table, rows)
    by_split = {s: [r for r in rows if r.split == s] for s in ("train", "val")}
    record = left_out_record(table, flagged, by_split, ["operating"])
    assert record["operating"]["images"] == 2 and record["operating"]["split"] == "val"
    assert set(record["operating"]["paths"]) == {"img0.png", "img5.png"}
    assert "training" not in record and record["operating"]["why"].endswith("by hand")
    assert record["operating"]["sha256"] and record["operating"]["file"] == str(table)
    both = left_out_record(table, flagged, by_split, ["operating", "training"])
    assert both["training"]["paths"] == ["img1.png"] and both["training"]["of"] == 24


def test_training_leaves_audited_images_out_and_records_them(tmp_path: Path) -> None:
    from pneumonia.training.train import train

    cfg = tiny_config(tmp_path)
    prepare_tiny(tmp_path, cfg)
    rows = read_manifest(cfg.data.manifest)
    val = [i for i, r in enumerate(rows) if r.split == "val"]
    trn = [i for i, r in enumerate(rows) if r.split == "train"]
    table = _audit_file(tmp_path, rows, {val[0], val[1], trn[0]})
    cfg = tiny_config(
        tmp_path, f"audit.file={table}", "audit.leave_out=[operating, training]",
        "train.run_name=audited", "guard.enabled=false",
    )  # fmt: skip
    summary = train(cfg, command="pytest")
    meta = json.loads((Path(summary["bundle"]) / "model.json").read_text())
    left = meta["data"]["left_out"]
    assert left["operating"]["images"] == 2 and left["training"]["images"] == 1
    assert left["training"]["paths"] == [rows[trn[0]].path]
    assert meta["threshold"]["detail"]["left_out"] == 2
    assert meta["validation"]["n"] == len(val)  # the metrics still count every image


def test_data_audit_command_writes_csv_gallery_and_counts(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "preprocess.image_size=64")
    prepare_tiny(tmp_path, cfg)
    manifest = cfg.data.manifest
    args = [f"data.manifest={manifest}", f"data.cache_dir={cfg.data.cache_dir}",
            "preprocess.image_size=64"]  # fmt: skip
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["data", "audit", *args, "--out", str(out), "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "Likely label errors" in result.output and "gallery" in result.output
    with (out / "label_issues.csv").open() as fh:
        listed = list(csv.DictReader(fh))
    assert len(listed) == sum(r.split in ("train", "val") for r in read_manifest(manifest))
    summary = json.loads((out / "audit.json").read_text())
    assert summary["issues"] == sum(r["issue"] == "True" for r in listed)
    page = (out / "index.html").read_text()
    assert page.count("<figure>") == summary["issues"]
    again = CliRunner().invoke(app, ["data", "audit", *args, "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output  # never overwritten silently
