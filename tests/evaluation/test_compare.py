import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import TinyRun, tiny_config
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.options import Scoring
from pneumonia.evaluation.compare import compare, resolve_entries, same_source
from pneumonia.evaluation.evaluate import evaluate
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.models import count_parameters
from pneumonia.training.train import train


@pytest.fixture(scope="module")
def deep_run(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different model on the tiny run's data: cnn_deep, one epoch."""
    out = tmp_path_factory.mktemp("deep")
    cfg = tiny_config(
        out,
        f"data.manifest={tiny_run.cfg.data.manifest}",
        f"data.cache_dir={tiny_run.cfg.data.cache_dir}",
        "model.name=cnn_deep",
        "train.epochs=1",
        "train.run_name=deep",
    )
    return Path(train(cfg)["run_dir"])


def test_table_csv_and_figures_carry_each_models_numbers(
    tiny_run: TinyRun, deep_run: Path, tmp_path: Path
) -> None:
    manifest = tiny_run.cfg.data.manifest
    out = tmp_path / "cmp"
    result = compare(
        [tiny_run.bundle.parent, deep_run],
        manifest,
        "val",
        out,
        Scoring(workers=1, show=False, n_boot=50),
    )

    with (out / "comparison.csv").open() as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"tiny", "deep"}
    for name, path in (("tiny", tiny_run.bundle), ("deep", deep_run / "bundle")):
        bundle = load_bundle(path)
        single = evaluate(
            bundle,
            manifest,
            "val",
            tmp_path / f"ev-{name}",
            Scoring(workers=1, show=False, n_boot=0),
        )
        row = rows[name]
        assert row["architecture"] == bundle.meta.architecture.name
        assert int(row["parameters"]) == count_parameters(bundle.model)
        assert float(row["roc_auc"]) == pytest.approx(single["metrics"]["roc_auc"])
        assert float(row["sensitivity"]) == pytest.approx(single["metrics"]["sensitivity"])
        assert float(row["threshold"]) == pytest.approx(bundle.threshold)
        assert float(row["train_time_s"]) == bundle.meta.training["duration_s"]
        assert row["tuned_on_these_images"] == "True"  # thresholds come from this val split
        assert float(row["roc_auc_low"]) <= float(row["roc_auc"]) <= float(row["roc_auc_high"])
        assert float(row["infer_images_per_s"]) > 0

    md = (out / "comparison.md").read_text()
    assert md.count("\n| tiny | cnn_small |") == 1 and md.count("\n| deep | cnn_deep |") == 1
    assert f"{float(rows['deep']['roc_auc']):.4f}" in md and "in-sample" in md
    assert json.loads((out / "comparison.json").read_text())["n"] == result["n"] > 0
    assert Image.open(out / "roc.png").size[0] >= 500


def test_the_same_bundle_twice_gets_two_names(tiny_run: TinyRun, tmp_path: Path) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_run.bundle, copy)
    names = [e.name for e in resolve_entries([tiny_run.bundle.parent, copy])]
    assert names == ["tiny", "tiny-2"]


def test_a_folder_that_is_no_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(PneumoniaError, match=r"neither a run folder .* nor a bundle"):
        resolve_entries([tmp_path])


def test_same_source_compares_resolved_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert same_source("m.csv split 'val'", f"{tmp_path}/m.csv split 'val'")
    assert not same_source("m.csv split 'val'", "m.csv split 'train'")
    assert not same_source(None, "m.csv split 'val'")
