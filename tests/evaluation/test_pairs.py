"""`pneumonia pairs`: originals matched to their copies by name, scored rendering by rendering."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TinyRun
from pneumonia.core.errors import DataError
from pneumonia.data.synthetic import make_pairs, save_image
from pneumonia.evaluation.pairs import agreement, find_pairs, pairs_report
from pneumonia.inference.loading import load_bundle


def test_pairs_are_matched_by_name_and_the_unmatched_listed(tmp_path: Path) -> None:
    originals, copies = make_pairs(tmp_path, 3)
    (copies / "NORMAL" / "IM-0001-0001.png").unlink()
    pairs, unmatched = find_pairs(originals, copies)
    assert len(pairs) == 5 and len(unmatched) == 1 and "IM-0001-0001.png" in unmatched[0]
    first = next(p for p in pairs if p.name == "person2_bacteria_2.png")
    assert first.label == "PNEUMONIA" and first.patient == "person2"
    assert Path(first.copy).parent == copies / "PNEUMONIA"


def test_no_pair_at_all_is_refused_naming_both_folders(tmp_path: Path) -> None:
    originals, _ = make_pairs(tmp_path / "a", 1)
    _, others = make_pairs(tmp_path / "b", 0)
    (others / "NORMAL").mkdir(parents=True, exist_ok=True)
    save_image(np.zeros((8, 8), np.uint8), others / "NORMAL" / "unrelated.png")
    with pytest.raises(DataError, match=f"no original in {originals}.*{others}"):
        find_pairs(originals, others)


def test_agreement_counts_against_known_answers() -> None:
    labels = np.array([1, 1, 0, 0])
    copy = (np.array([0.9, 0.2, 0.1, 0.6]), np.array([1.0, 1.0, 1.0, 9.0]))
    view = (np.array([0.9, 0.05, 0.1, 0.4]), np.array([1.0, 5.0, 1.0, 1.0]))
    a = agreement(["a", "b", "c", "d"], labels, copy, view, threshold=0.15, guard_threshold=2.0)
    assert a["mean_dp"] == pytest.approx((0 + 0.15 + 0 + 0.2) / 4)
    z = {q: np.log(q / (1 - q)) for q in (0.05, 0.2, 0.4, 0.6)}
    assert a["mean_dlogit"] == pytest.approx((abs(z[0.05] - z[0.2]) + abs(z[0.4] - z[0.6])) / 4)
    assert a["max_dp"] == pytest.approx(0.2)
    assert a["flips"] == 1 and a["flipped"] == ["b"]  # 0.2 -> 0.05 crosses 0.15; 0.6 -> 0.4 not
    assert a["guard_changes"] == 2 and a["flagged"] == 1 and a["flagged_copy"] == 1
    assert a["flagged_names"] == ["b"]
    assert a["rendering"] == {"sensitivity": 0.5, "specificity": 0.5}
    assert a["copy"] == {"sensitivity": 1.0, "specificity": 0.5}
    unguarded = agreement(["a", "b", "c", "d"], labels, copy, view, 0.15, None)
    assert unguarded["flagged"] is None and unguarded["guard_changes"] is None


def test_identical_files_agree_and_a_changed_copy_is_the_one_that_moves(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    changed = "person1_bacteria_1.png"
    originals, copies = make_pairs(tmp_path, 4, changed=changed)
    bundle = load_bundle(tiny_run.bundle)
    result = pairs_report(bundle, originals, copies, tmp_path / "out", workers=1, show=False)
    assert result["pairs"] == 8 and result["positives"] == 4 and result["negatives"] == 4
    rows = list(csv.DictReader((tmp_path / "out" / "pairs.csv").open()))
    assert len(rows) == 8 * len(result["renderings"])
    for name in ("original", "dicom_m2_12", "dicom_m1_16", "png16"):  # lossless: same pixels
        moved = {
            r["name"] for r in rows if r["rendering"] == name and r["p_copy"] != r["p_rendering"]
        }
        assert moved == {changed}, name
        assert result["renderings"][name]["max_dp"] > 0
    same = [r for r in rows if r["rendering"] == "original" and r["name"] != changed]
    assert all(r["ood_copy"] == r["ood_rendering"] for r in same)
    written = json.loads((tmp_path / "out" / "pairs.json").read_text())
    assert written["renderings"]["original"]["flips"] == result["renderings"]["original"]["flips"]
    assert set(written["renderings"]) == {
        "original",
        "dicom_m2_12",
        "dicom_m1_16",
        "png16",
        "down_1024",
        "jpeg_60",
    }


def test_only_and_renderings_narrow_the_run_and_a_bad_file_is_left_out(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    originals, copies = make_pairs(tmp_path, 3)
    (originals / "NORMAL" / "IM-0002-0001.png").write_bytes(b"not an image")
    bundle = load_bundle(tiny_run.bundle)
    only = {"IM-0001-0001.png", "IM-0002-0001.png", "person0_bacteria_0.png"}
    result = pairs_report(
        bundle, originals, copies, tmp_path / "o", ["original", "png16"], only, 1, False
    )
    assert result["pairs"] == 2 and set(result["renderings"]) == {"original", "png16"}
    assert [u["path"] for u in result["unreadable"]] == [
        str(originals / "NORMAL" / "IM-0002-0001.png")
    ]
    with pytest.raises(DataError, match="unknown rendering 'gif'"):
        pairs_report(bundle, originals, copies, tmp_path / "p", ["gif"], None, 1, False)


def test_the_band_is_the_quantile_of_each_pairs_largest_logit_change() -> None:
    from scipy.stats.mstats import hdquantiles

    from pneumonia.evaluation.calibration import logit
    from pneumonia.evaluation.pairs import CLIP, rendering_band

    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 400)
    change = np.linspace(0, 2, 400)  # known largest change per pair
    sign = rng.choice([-1, 1], 400)
    p_copy = 1 / (1 + np.exp(-z))
    smaller = 1 / (1 + np.exp(-(z + 0.5 * sign * change)))  # never the largest
    largest = 1 / (1 + np.exp(-(z + sign * change)))
    got = rendering_band(p_copy, [smaller, largest])
    assert got["logit"] == pytest.approx(float(hdquantiles(change, prob=[0.95])[0]), abs=1e-6)
    assert got["logit"] == pytest.approx(1.9, abs=0.01)
    assert got["pairs"] == 400 and got["at_or_above"] == pytest.approx(20, abs=1)
    assert rendering_band(p_copy, [largest], 0.5)["logit"] == pytest.approx(1.0, abs=0.02)
    assert np.isfinite(logit(np.array([0.0, 1.0]), CLIP)).all()  # saturated stay finite
    with pytest.raises(DataError, match="at least two pairs"):
        rendering_band(p_copy[:1], [largest[:1]])


def test_pairs_that_never_move_record_no_band(tiny_run: TinyRun, tmp_path: Path) -> None:
    import shutil

    from pneumonia.evaluation.pairs import record_pairs

    originals, copies = make_pairs(tmp_path, 2)  # originals identical to their copies
    bundle = load_bundle(tiny_run.bundle)
    lossless = ["original", "png16"]
    result = pairs_report(
        bundle, originals, copies, tmp_path / "o", lossless, workers=1, show=False
    )
    assert result["borderline"]["logit"] == 0
    folder = shutil.copytree(tiny_run.bundle, tmp_path / "b")
    record_pairs(folder, result, "identical", "pneumonia pairs")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["borderline"] is None and meta["validation"]["real_files"]["pairs"] == 4


def test_pairs_against_a_recorded_band_count_what_it_covers_and_which_flips_it_holds() -> None:
    from pneumonia.core.meta import Borderline
    from pneumonia.evaluation.pairs import against_band

    band = Borderline(logit=1.0, quantile=0.95, pairs=9, renderings=["a"], measured_on="test")
    p_copy = np.array([0.5, 0.5, 0.9, 0.01])  # band at 0.5: P in [0.269, 0.731)
    near = np.array([0.55, 0.3, 0.9, 0.01])  # pair 1 changes label, both answers in the band
    far = np.array([0.5, 0.5, 0.2, 0.01])  # pair 2 changes label from outside it (3.6 logit)
    got = against_band(p_copy, [near, far], band, threshold=0.5)
    assert got == {"logit": 1.0, "pairs": 4, "covered": 3, "flips": 2, "flips_within": 1}
