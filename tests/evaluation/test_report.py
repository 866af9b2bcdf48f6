import json
import re
import shutil
from pathlib import Path

from conftest import TinyRun
from pneumonia.core.bundle import read_meta, write_meta
from pneumonia.core.options import Scoring
from pneumonia.evaluation.report import confident_errors, report, thumbnail_uri
from pneumonia.inference.loading import load_bundle

PNG = "data:image/png;base64,"


def _row(label: str, predicted: str, p: float) -> dict[str, object]:
    return {
        "path": f"{label}-{p}.png",
        "patient": "x",
        "label": label,
        "predicted": predicted,
        "probability": p,
    }


def test_confident_errors_are_ranked_by_how_wrong() -> None:
    rows = [
        _row("NORMAL", "PNEUMONIA", 0.6),
        _row("NORMAL", "PNEUMONIA", 0.9),
        _row("NORMAL", "NORMAL", 0.1),
        _row("PNEUMONIA", "NORMAL", 0.2),
        _row("PNEUMONIA", "NORMAL", 0.05),
        _row("PNEUMONIA", "PNEUMONIA", 0.99),
    ]
    false_alarms, misses, n_fa, n_miss = confident_errors(rows, k=1)
    assert [r["probability"] for r in false_alarms] == [0.9]
    assert [r["probability"] for r in misses] == [0.05]
    assert (n_fa, n_miss) == (2, 2)


def test_thumbnail_of_a_bad_file_is_none(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("text")
    assert thumbnail_uri(str(bad)) is None


def test_page_carries_the_numbers_figures_and_errors(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    out = tmp_path / "rep"
    page = report(bundle, tiny_run.data, "test", out, Scoring(workers=1, show=False, n_boot=50))
    html = page.read_text()
    result = json.loads((out / "metrics.json").read_text())
    m = result["metrics"]

    assert f"{m['roc_auc']:.4f}" in html and f"{m['specificity']:.4f}" in html
    low, high = result["intervals"]["bootstrap"]["sensitivity"]
    assert f"{low:.4f} - {high:.4f}" in html
    cm = m["confusion_matrix"]
    assert f"TN {cm['tn']}, FP {cm['fp']}, FN {cm['fn']}, TP {cm['tp']}" in html
    assert f"{bundle.threshold:.4g}" in html and bundle.meta.threshold.rule in html
    assert "Model card: cnn_small" in html and "<table>" in html
    assert f"({cm['fp']} in all)" in html and f"({cm['fn']} in all)" in html
    shown = min(cm["fp"], 8) + min(cm["fn"], 8)
    figures = 5  # curves, ROC, PR, reliability, confusion matrix
    assert html.count(f'src="{PNG}') == figures + shown
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from a network
    epochs = len(bundle.meta.training["history"])
    assert epochs == bundle.meta.training["epochs_run"] and html.count("<tr><td>") >= epochs
    guard = result["guard"]
    assert guard["active"] and f"guard flagged {guard['flagged']} of {m['n']} images" in html


def test_a_bundle_without_history_says_so(tiny_run: TinyRun, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_run.bundle, folder)
    _, meta = read_meta(folder)
    training = {k: v for k, v in meta.training.items() if k != "history"}
    write_meta(meta.model_copy(update={"training": training}), folder)
    page = report(
        load_bundle(folder),
        tiny_run.data,
        "test",
        tmp_path / "rep",
        Scoring(workers=1, show=False, n_boot=0),
    )
    html = page.read_text()
    assert "records no per-epoch history" in html and html.count(f'src="{PNG}') >= 4
    assert "95% CI n/a" in html  # no bootstrap asked for


def test_in_sample_threshold_is_flagged(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    manifest = tiny_run.cfg.data.manifest
    html = report(
        bundle, manifest, "val", tmp_path / "val", Scoring(workers=1, show=False, n_boot=0)
    ).read_text()
    assert "chosen on these same images" in html
    html = report(
        bundle, tiny_run.data, "test", tmp_path / "test", Scoring(workers=1, show=False, n_boot=0)
    ).read_text()
    assert "chosen on these same images" not in html


def test_without_thumbnails_names_the_errors_only(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    page = report(
        bundle,
        tiny_run.data,
        "test",
        tmp_path / "rep",
        Scoring(workers=1, show=False, n_boot=0),
        thumbnails=False,
    )
    html = page.read_text()
    cm = json.loads((tmp_path / "rep" / "metrics.json").read_text())["metrics"]["confusion_matrix"]
    errors = min(cm["fp"], 8) + min(cm["fn"], 8)
    assert (
        errors > 0
        and html.count("(image not embedded)") == errors
        and html.count(f'src="{PNG}') == 5
    )
