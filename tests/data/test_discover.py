"""Every layout people download is found, litter ignored, and anything odd reported."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia.core.errors import DataError
from pneumonia.data.discover import discover, patient_id, subtype_of
from pneumonia.data.synthetic import make_dataset

COUNTS = {"NORMAL": 3, "PNEUMONIA": 5}


def _counts(found, split: str) -> dict[str, int]:
    return {lab: sum(s.split == split and s.label == lab for s in found.samples) for lab in COUNTS}


@pytest.mark.parametrize("layout", ["kaggle", "kaggle_nested", "csv", "medmnist"])
def test_three_split_layouts(tmp_path: Path, layout: str) -> None:
    per_split = {"train": COUNTS, "val": {"NORMAL": 1, "PNEUMONIA": 1}, "test": COUNTS}
    target = make_dataset(tmp_path, layout, per_split, size_range=(24, 40))  # type: ignore[arg-type]
    found = discover(target)
    assert _counts(found, "train") == COUNTS
    assert _counts(found, "val") == {"NORMAL": 1, "PNEUMONIA": 1}
    assert _counts(found, "test") == COUNTS
    assert not [p for p in found.problems if p.severity == "error"]
    assert not any("__MACOSX" in s.path or ".DS_Store" in s.path for s in found.samples)


def test_tolgadincer_layout_has_train_and_test(tmp_path: Path) -> None:
    make_dataset(tmp_path, "tolgadincer", {"train": COUNTS, "test": COUNTS}, size_range=(24, 32))
    found = discover(tmp_path)
    assert {s.split for s in found.samples} == {"train", "test"}
    assert len(found.samples) == 16


def test_pointing_at_one_split_or_the_download_folder(tmp_path: Path) -> None:
    make_dataset(tmp_path, "kaggle", {"train": COUNTS, "test": COUNTS}, size_range=(24, 32))
    only_test = discover(tmp_path / "chest_xray" / "test")
    assert {s.split for s in only_test.samples} == {"test"}
    assert len(discover(tmp_path).samples) == 16  # the download folder above chest_xray/


def test_labels_are_case_insensitive_and_odd_folders_reported(tmp_path: Path) -> None:
    make_dataset(tmp_path, "kaggle", {"train": COUNTS}, size_range=(24, 32))
    train = tmp_path / "chest_xray" / "train"
    (train / "NORMAL").rename(train / "normal")
    (train / "COVID").mkdir()
    (train / "COVID" / "x.jpeg").write_bytes(b"?")
    (train / "PNEUMONIA" / "readme.txt").write_text("hi")
    found = discover(tmp_path)
    assert _counts(found, "train") == COUNTS
    messages = {Path(p.path).name: p.message for p in found.problems}
    assert "unrecognised label folder 'COVID'" in messages["COVID"]
    assert "not an image file (.txt)" in messages["readme.txt"]


def test_empty_class_is_an_error_problem(tmp_path: Path) -> None:
    make_dataset(tmp_path, "kaggle", {"train": COUNTS}, size_range=(24, 32))
    for f in (tmp_path / "chest_xray" / "train" / "NORMAL").iterdir():
        f.unlink()
    found = discover(tmp_path)
    errors = [p for p in found.problems if p.severity == "error"]
    assert len(errors) == 1 and "NORMAL has no images" in errors[0].message


def test_missing_class_folder_is_an_error_problem(tmp_path: Path) -> None:
    root = tmp_path / "data" / "train" / "PNEUMONIA"
    root.mkdir(parents=True)
    (root / "person1_virus_1.jpeg").write_bytes(b"x")
    found = discover(tmp_path / "data")
    assert any("no NORMAL folder" in p.message and p.severity == "error" for p in found.problems)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "no such file or folder"),
        (lambda p: (p / "x").mkdir() or p / "x", "unrecognised dataset layout"),
        (lambda p: (p / "a.txt").write_text("x") and p / "a.txt", "not a dataset"),
    ],
)
def test_unusable_roots_raise(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(DataError, match=message):
        discover(make(tmp_path))


def test_two_datasets_side_by_side_are_ambiguous(tmp_path: Path) -> None:
    make_dataset(tmp_path / "a", "kaggle", {"train": COUNTS}, size_range=(24, 32))
    make_dataset(tmp_path / "b", "kaggle", {"train": COUNTS}, size_range=(24, 32))
    with pytest.raises(DataError, match="several datasets"):
        discover(tmp_path)


def test_csv_bad_rows_are_reported_not_guessed(tmp_path: Path) -> None:
    csv_path = make_dataset(tmp_path, "csv", {"train": COUNTS}, size_range=(24, 32))
    with csv_path.open("a") as fh:
        fh.write("train/NORMAL/gone.jpeg,NORMAL,,train\n")
        fh.write("train/NORMAL/IM-0001-0001.jpeg,covid,,train\n")
        fh.write("train/NORMAL/IM-0001-0001.jpeg,normal,,holdout\n")
    found = discover(csv_path)
    assert len(found.samples) == 8
    text = " ".join(p.message for p in found.problems)
    assert "file not found" in text and "unrecognised label 'covid'" in text
    assert "unrecognised split 'holdout'" in text
    assert {s.patient for s in found.samples if s.label == "NORMAL"} == {"pN1", "pN2"}


def test_csv_without_required_columns(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("file,class\na.png,NORMAL\n")
    with pytest.raises(DataError, match="path,label"):
        discover(tmp_path / "x.csv")


def test_npz_label_outside_0_1_reported(tmp_path: Path) -> None:
    imgs = np.zeros((3, 8, 8), np.uint8)
    np.savez(tmp_path / "pneumoniamnist.npz", train_images=imgs, train_labels=[[0], [1], [2]])
    found = discover(tmp_path)  # the folder holding one npz is found too
    assert len(found.samples) == 2
    assert "label 2" in found.problems[0].message
    np.savez(tmp_path / "other.npz", x=imgs)
    with pytest.raises(DataError, match="not a MedMNIST"):
        discover(tmp_path / "other.npz")


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1480_bacteria_3860.jpeg", "person1480"),
        ("person12_virus_44_1.jpeg", "person12"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0017-0001-0002.jpeg", "IM-0017"),
        ("NORMAL2-IM-0381-0001.jpeg", "NORMAL2-IM-0381"),
        ("BACTERIA-1008087-0001.jpeg", "1008087"),  # Mendeley v3: one patient, any class
        ("VIRUS-1008087-0002.jpeg", "1008087"),
        ("NORMAL-28501-0001.jpeg", "28501"),
        ("scan.png", "image:/d/scan.png"),
    ],
)
def test_patient_ids(name: str, patient: str) -> None:
    assert patient_id(f"/d/{name}") == patient


@pytest.mark.parametrize(
    ("path", "label", "subtype"),
    [
        ("train/PNEUMONIA/person1480_bacteria_3860.jpeg", "PNEUMONIA", "bacterial"),
        ("train/PNEUMONIA/person12_virus_44_1.jpeg", "PNEUMONIA", "viral"),
        ("/d/PNEUMONIA/PERSON7_VIRUS_12.JPEG", "PNEUMONIA", "viral"),
        (
            "CellData/chest_xray/train/PNEUMONIA/BACTERIA-1008087-0001.jpeg",
            "PNEUMONIA",
            "bacterial",
        ),
        ("CellData/chest_xray/train/PNEUMONIA/VIRUS-1037162-0001.jpeg", "PNEUMONIA", "viral"),
        ("labels.csv/../scans/p4_bacterial.png", "PNEUMONIA", "bacterial"),
        ("scans/case_viral-3.png", "PNEUMONIA", "viral"),
        ("scan.png", "PNEUMONIA", None),  # the name does not say
        ("viruses_folder/scan.png", "PNEUMONIA", None),  # only the file name counts
        ("pneumoniamnist.npz#train/12", "PNEUMONIA", None),  # MedMNIST has no subtype
        ("train/NORMAL/IM-0115-0001.jpeg", "NORMAL", None),
        ("person1480_bacteria_3860.jpeg", "NORMAL", None),  # NORMAL never has one
    ],
)
def test_subtype_from_every_naming_scheme(path: str, label: str, subtype: str | None) -> None:
    assert subtype_of(path, label) == subtype


def test_synthetic_pneumonia_names_give_every_subtype(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, "kaggle", {"train": {"NORMAL": 4, "PNEUMONIA": 8}})
    found = [subtype_of(s.path, s.label) for s in discover(root).samples]
    assert found.count(None) == 4 and {"bacterial", "viral"} <= set(found)
