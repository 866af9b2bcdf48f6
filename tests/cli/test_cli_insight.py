"""compare, report, explain, stress and pairs as a user types them, bad input included."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from conftest import TinyRun
from pneumonia.cli import app
from pneumonia.data.synthetic import make_pairs, save_image, synthetic_xray

runner = CliRunner()


def invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_compare_and_report(tiny_run: TinyRun, tmp_path: Path) -> None:
    manifest = tiny_run.cfg.data.manifest
    out = tmp_path / "cmp"
    args = ["--data", manifest, "--split", "val", "--out", out, "--workers", 1, "--bootstrap", 20]
    result = invoke("compare", tiny_run.bundle.parent, tiny_run.bundle, *args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["model"] for r in rows] == ["tiny", "tiny-2"]
    assert (
        rows[0]["roc_auc"] == rows[1]["roc_auc"]
        and f"{float(rows[0]['roc_auc']):.4f}" in result.output
    )

    page = tmp_path / "rep" / "report.html"
    args = ["--data", tiny_run.data, "--out", page.parent, "--workers", 1, "--no-track"]
    result = invoke("report", tiny_run.bundle, *args, "--no-thumbnails")
    assert result.exit_code == 0, result.output
    assert page.read_text().count('src="data:image/png') == 5  # the figures, no X-rays
    assert (
        str(page) in result.output.replace("\n", "") and "Most confident errors" in page.read_text()
    )
    shifted = invoke("report", tiny_run.bundle, *args, "--stress", "--force", "--bootstrap", 10)
    assert shifted.exit_code == 0, shifted.output
    html = page.read_text()
    assert "Shift suite" in html and "crop_70" in html and "(to refuse)" in html
    assert (
        html.count('src="data:image/png') > 5 and (page.parent / "stress" / "stress.json").is_file()
    )
    again = invoke("report", tiny_run.bundle, *args)
    assert again.exit_code == 1 and "--force" in again.output


def test_explain_writes_overlays_and_names_bad_files(tiny_run: TinyRun, tmp_path: Path) -> None:
    good = save_image(
        synthetic_xray("NORMAL", 40, 60, np.random.default_rng(0)), tmp_path / "g.png"
    )
    bad = tmp_path / "bad.jpeg"
    bad.write_bytes(b"")
    out = tmp_path / "cams"
    result = invoke("explain", tiny_run.bundle, good, bad, "--out", out, "--method", "gradcam++")
    assert result.exit_code == 0, result.output
    assert "qualitative aid" in result.output and "empty" in result.output
    assert [p.name for p in out.iterdir()] == ["000-g-gradcampp.png"]

    result = invoke("explain", tiny_run.bundle, bad, "--out", tmp_path / "none")
    assert result.exit_code == 1
    result = invoke("explain", tiny_run.bundle, good, "--method", "lime", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "gradcam" in result.output


def test_stress_command_prints_the_suite_and_refuses_unknown_shifts(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    manifest = tiny_run.cfg.data.manifest
    out = tmp_path / "stress"
    args = ["--data", manifest, "--out", out, "--workers", 1, "--bootstrap", 10]
    result = invoke("stress", tiny_run.bundle, *args, "--shift", "crop_70", "--shift", "inverted")
    assert result.exit_code == 0, result.output
    assert "crop_70" in result.output and "(to refuse)" in result.output
    assert "worst roc_auc" in result.output and (out / "stress.json").is_file()
    args[args.index(out)] = tmp_path / "never"
    bad = invoke("stress", tiny_run.bundle, *args, "--shift", "warp_9")
    assert bad.exit_code == 1 and "unknown shift(s) warp_9" in bad.output
    assert not (tmp_path / "never").exists()


def test_pairs_command_prints_every_rendering_and_refuses_an_unknown_one(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    originals, copies = make_pairs(tmp_path, 3)
    out = tmp_path / "pairs"
    args = ["--originals", originals, "--copies", copies, "--out", out, "--workers", 1]
    result = invoke("pairs", tiny_run.bundle, *args)
    assert result.exit_code == 0, result.output
    assert "6 originals (6 patients)" in result.output and "dicom_m1_16" in result.output
    assert "borderline band:" in result.output and "of the 6 pairs" in result.output
    assert (out / "pairs.json").is_file() and (out / "pairs.csv").is_file()
    again = invoke("pairs", tiny_run.bundle, *args)
    assert again.exit_code == 1 and "--force" in again.output
    assert "Not checked on originals" in (tiny_run.bundle / "MODEL_CARD.md").read_text()
    copy = shutil.copytree(tiny_run.bundle, tmp_path / "bundle")
    too_few = invoke("pairs", copy, *args, "--force", "--record", "synthetic pairs")
    assert too_few.exit_code == 0, too_few.output
    assert "no borderline band kept: 6 pairs are fewer than 100" in too_few.output
    assert json.loads((copy / "model.json").read_text())["borderline"] is None
    recorded = invoke(
        "pairs", copy, *args, "--force", "--record", "synthetic pairs", "--band-min-pairs", 6
    )
    assert recorded.exit_code == 0, recorded.output
    assert "no borderline band kept" not in recorded.output
    card = (copy / "MODEL_CARD.md").read_text()
    assert "## Real files" in card and "synthetic pairs" in card and "| dicom_m2_12 |" in card
    meta = json.loads((copy / "model.json").read_text())
    record = meta["validation"]["real_files"]
    assert record["pairs"] == 6 and record["command"].startswith("pneumonia pairs")
    assert record["command"].endswith("--band-min-pairs 6")  # the command that kept it
    band = meta["borderline"]
    assert band["pairs"] == 6 and band["logit"] > 0 and "synthetic pairs" in band["measured_on"]
    assert len(band["renderings"]) == 6 and 0 <= band["validation_share"] <= 1
    assert "- Borderline: an answer with P in [" in card
    again = invoke("pairs", copy, *args, "--force")  # now against the band it recorded
    assert again.exit_code == 0 and "the bundle's own band" in again.output
    assert "of 6 pairs moved less" in again.output.replace("\n", " ")
    image = copies / "NORMAL" / "IM-0000-0001.png"
    assert invoke("predict", copy, image, "--out", tmp_path / "p").exit_code == 0
    answer = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert answer["borderline"]["active"] and answer["borderline"]["low"] < answer["threshold"]
    assert answer["predictions"][0]["borderline"] in (True, False)
    listed = tmp_path / "only.txt"
    listed.write_text("IM-0001-0001.png\nperson2_bacteria_2.png\n")
    some = invoke("pairs", tiny_run.bundle, *args, "--force", "--only", listed)
    assert some.exit_code == 0 and "2 originals (2 patients)" in some.output
    missing = invoke("pairs", tiny_run.bundle, *args, "--force", "--only", tmp_path / "none.txt")
    assert missing.exit_code == 1 and "none.txt: no such file" in missing.output
    assert "Traceback" not in missing.output
    args[args.index(out)] = tmp_path / "never"
    bad = invoke("pairs", tiny_run.bundle, *args, "--rendering", "gif")
    assert bad.exit_code == 1 and "unknown rendering 'gif'" in bad.output
    assert not (tmp_path / "never").exists()


def test_threshold_command_takes_views(tiny_run: TinyRun, tmp_path: Path) -> None:
    manifest = tiny_run.cfg.data.manifest
    out = tmp_path / "tuned"
    result = invoke(
        "threshold", tiny_run.bundle, "--data", manifest, "--rule", "youden",
        "--view", "wide_1.33", "--pool", "worst", "--out", out, "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wide_1.33" in (out / "model.json").read_text()
    bad = invoke("threshold", tiny_run.bundle, "--data", manifest, "--view", "x", "--out", out)
    assert bad.exit_code != 0 and "unknown shift" in bad.output
