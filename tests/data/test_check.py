"""The data check report: its numbers and figures, on data with known flaws."""

import json
import shutil
from pathlib import Path

from PIL import Image

from pneumonia.data.check import build_report, write_report
from pneumonia.data.synthetic import make_dataset


def test_report_counts_sizes_duplicates_and_leaks(tmp_path: Path) -> None:
    per = {"train": {"NORMAL": 4, "PNEUMONIA": 6}, "test": {"NORMAL": 2, "PNEUMONIA": 2}}
    make_dataset(tmp_path, "kaggle", per, size_range=(20, 50), modes=("L", "RGB"))
    base = tmp_path / "chest_xray"
    normal = sorted((base / "train" / "NORMAL").iterdir())
    shutil.copy(normal[0], base / "train" / "NORMAL" / "IM-0777-0001.jpeg")  # within split
    shutil.copy(normal[1], base / "test" / "NORMAL" / "IM-0001-0009.jpeg")  # across + leak
    (base / "train" / "PNEUMONIA" / "person9_virus_9.jpeg").write_bytes(b"GIF89a broken")

    report = build_report(tmp_path, workers=1, show=False)
    assert report["counts"]["train"] == {"NORMAL": 5, "PNEUMONIA": 6}
    assert report["counts"]["test"] == {"NORMAL": 3, "PNEUMONIA": 2}
    assert report["totals"] == {"NORMAL": 8, "PNEUMONIA": 8}
    assert report["class_balance"]["train"]["PNEUMONIA"] == round(6 / 11, 4)
    assert sum(report["modes"].values()) == 16 and set(report["modes"]) <= {"L", "RGB"}
    assert 20 <= report["sizes"]["width"]["min"] <= report["sizes"]["width"]["max"] <= 50
    [unreadable] = report["unreadable"]
    assert unreadable["path"].endswith("person9_virus_9.jpeg") and unreadable["reason"]
    assert len(report["duplicates"]) == 2 and report["duplicates_cross_split"] == 1
    assert {"patient": "IM-0001", "splits": ["test", "train"]} in report["patients_across_splits"]

    out = tmp_path / "report"
    out.mkdir()
    path = write_report(report, out)
    saved = json.loads(path.read_text())
    assert saved["totals"] == report["totals"] and "_facts" not in saved
    for name in saved["figures"]:
        with Image.open(out / name) as fig:
            assert fig.format == "PNG" and fig.width > 200
