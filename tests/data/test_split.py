"""Split properties: grouped by patient, stratified, deterministic, test never moved."""

from collections import Counter
from pathlib import Path

import pytest

from pneumonia.core.errors import DataError
from pneumonia.data.split import (
    Row,
    assign_splits,
    carve_validation,
    make_manifest,
    read_manifest,
    write_manifest,
)
from pneumonia.data.synthetic import make_dataset


def _rows(n_patients: int, per_patient: int, label: str, prefix: str) -> list[Row]:
    return [
        Row(f"/d/{prefix}{p}_{k}.png", label, f"{prefix}{p}", "train", f"{prefix}{p}-{k}")
        for p in range(n_patients)
        for k in range(per_patient)
    ]


@pytest.fixture
def pool() -> list[Row]:
    return _rows(60, 3, "NORMAL", "n") + _rows(140, 2, "PNEUMONIA", "p")


def test_no_patient_in_two_splits_and_ratio_kept(pool: list[Row]) -> None:
    rows = carve_validation(pool, 0.1, seed=1)
    by_split = {s: [r for r in rows if r.split == s] for s in ("train", "val")}
    assert not {r.patient for r in by_split["train"]} & {r.patient for r in by_split["val"]}
    assert 0.07 < len(by_split["val"]) / len(rows) < 0.13
    ratio = {s: Counter(r.label for r in v)["PNEUMONIA"] / len(v) for s, v in by_split.items()}
    assert abs(ratio["train"] - ratio["val"]) < 0.05


def test_same_seed_same_split_other_seed_other_split(pool: list[Row]) -> None:
    assert carve_validation(pool, 0.1, seed=3) == carve_validation(pool, 0.1, seed=3)
    first = assign_splits(pool, 0.1, 3)
    assert assign_splits(list(reversed(pool)), 0.1, 3) == first  # input order does not matter

    def val(rows: list[Row]) -> set[str]:
        return {r.path for r in rows if r.split == "val"}

    assert val(assign_splits(pool, 0.1, 4)) != val(first)


def test_identical_content_stays_on_one_side(pool: list[Row]) -> None:
    copy = Row("/d/copy.png", "NORMAL", "someone-else", "train", pool[0].sha256)
    rows = {r.path: r.split for r in carve_validation([*pool, copy], 0.5, seed=0)}
    assert rows["/d/copy.png"] == rows[pool[0].path]


def test_official_val_folded_or_kept_and_test_untouched(pool: list[Row]) -> None:
    official_val = [Row(f"/v/{i}.png", "NORMAL", f"v{i}", "val", f"v{i}") for i in range(4)]
    test = [Row(f"/t/{i}.png", "PNEUMONIA", f"t{i}", "test", f"t{i}") for i in range(5)]
    folded = {r.path: r.split for r in assign_splits(pool + official_val + test, 0.1, 0)}
    assert all(folded[r.path] == "test" for r in test)
    assert sum(folded[r.path] == "train" for r in official_val) >= 1  # joined the pool
    kept = {r.path: r.split for r in assign_splits(pool + official_val + test, 0.1, 0, "keep")}
    assert all(kept[r.path] == "val" for r in official_val)
    assert all(kept[r.path] in ("train", "test") for r in pool + test)


def test_one_class_or_too_few_patients_is_an_error() -> None:
    with pytest.raises(DataError, match="no NORMAL images"):
        carve_validation(_rows(20, 1, "PNEUMONIA", "p"), 0.1, 0)
    with pytest.raises(DataError, match="too few patients"):
        carve_validation(_rows(3, 4, "NORMAL", "n") + _rows(30, 1, "PNEUMONIA", "p"), 0.1, 0)


def test_manifest_on_disk_is_deterministic_and_protected(tmp_path: Path) -> None:
    per = {"train": {"NORMAL": 30, "PNEUMONIA": 50}, "val": {"NORMAL": 2, "PNEUMONIA": 2}}
    make_dataset(tmp_path / "d", "kaggle", per, size_range=(16, 24))
    rows, _ = make_manifest(tmp_path / "d", 0.2, seed=5, workers=1, show=False)
    target = tmp_path / "m.csv"
    assert write_manifest(rows, target) is True
    again, _ = make_manifest(tmp_path / "d", 0.2, seed=5, workers=1, show=False)
    assert write_manifest(again, target) is False  # identical: nothing to do
    other, _ = make_manifest(tmp_path / "d", 0.2, seed=6, workers=1, show=False)
    with pytest.raises(DataError, match="--force"):
        write_manifest(other, target)
    assert write_manifest(other, target, force=True) is True
    assert read_manifest(target) == other
    assert {r.split for r in read_manifest(target)} == {"train", "val"}
    assert all(len(r.sha256) == 64 for r in rows)


def test_empty_image_file_is_excluded_not_fatal(tmp_path: Path) -> None:
    per = {"train": {"NORMAL": 20, "PNEUMONIA": 20}}
    make_dataset(tmp_path, "kaggle", per, size_range=(16, 24))
    (tmp_path / "chest_xray" / "train" / "NORMAL" / "IM-9999-0001.jpeg").write_bytes(b"")
    rows, problems = make_manifest(tmp_path, 0.2, 0, workers=1, show=False)
    assert len(rows) == 40
    assert any("empty" in p.message and "IM-9999" in p.path for p in problems)


def test_read_manifest_rejects_other_csv(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a manifest"):
        read_manifest(tmp_path / "x.csv")
    with pytest.raises(DataError, match="data split"):
        read_manifest(tmp_path / "missing.csv")
