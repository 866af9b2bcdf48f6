"""On the real Kaggle training split in ../shared (skipped when absent)."""

from pathlib import Path

from pneumonia.data.check import build_report
from pneumonia.data.split import make_manifest


def test_check_reports_the_published_counts(shared_chest_xray: Path) -> None:
    report = build_report(shared_chest_xray, show=False)
    assert report["totals"] == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert report["unreadable"] == []


def test_split_shares_no_patient_between_train_and_val(shared_chest_xray: Path) -> None:
    rows, _ = make_manifest(shared_chest_xray, 0.1, 42, show=False)
    train = {r.patient for r in rows if r.split == "train"}
    val = {r.patient for r in rows if r.split == "val"}
    assert train and val and not train & val
    train_hashes = {r.sha256 for r in rows if r.split == "train"}
    assert not train_hashes & {r.sha256 for r in rows if r.split == "val"}
    assert 0.08 < len([r for r in rows if r.split == "val"]) / len(rows) < 0.12
