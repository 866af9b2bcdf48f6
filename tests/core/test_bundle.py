"""Bundles: self-describing, loadable from the folder alone, and tampering is caught."""

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from conftest import TinyRun
from pneumonia.core import LABELS
from pneumonia.core import bundle as bundle_module
from pneumonia.core.bundle import read_meta
from pneumonia.core.errors import BundleError
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.network import save_bundle


@pytest.fixture
def copy(tiny_run: TinyRun, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_run.bundle, tmp_path / "bundle"))


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_bundle_files_are_readable_by_other_users(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)  # e.g. a container's user reading a mounted bundle
    folder = save_bundle(bundle.model, bundle.meta, tmp_path / "b")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == dict.fromkeys(["MODEL_CARD.md", "model.json", "model.safetensors"], 0o644)
    resaved = load_bundle(folder)
    assert resaved.meta.files == {"model.safetensors": bundle.meta.files["model.safetensors"]}
    assert resaved.meta.guard is None and resaved.guard is None  # its file was not written


def test_bundle_describes_itself(tiny_run: TinyRun) -> None:
    folder, meta = read_meta(tiny_run.bundle)
    assert sorted(p.name for p in folder.iterdir()) == [
        "MODEL_CARD.md",
        "guard.safetensors",
        "model.json",
        "model.safetensors",
    ]
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"| roc_auc | {meta.validation['roc_auc']:.4f} |" in card
    assert "Not a medical device" in card and "cnn_small" in card
    assert meta.architecture.name == "cnn_small" and meta.labels == list(LABELS)
    assert meta.preprocessing == tiny_run.cfg.preprocess
    assert meta.threshold.rule == "youden" and 0 < meta.threshold.value < 1
    assert meta.calibration is not None and meta.calibration.temperature > 0
    assert meta.validation["roc_auc"] == tiny_run.summary["validation"]["roc_auc"]
    assert len(meta.data["manifest_sha256"]) == 64
    assert {"torch", "timm", "lightning", "pneumonia"} <= set(meta.versions)
    assert meta.training["config"]["model"]["name"] == "cnn_small"


def test_loaded_model_matches_the_trained_one(tiny_run: TinyRun) -> None:
    bundle = load_bundle(tiny_run.bundle)
    assert not bundle.model.training
    x = torch.randn(3, 1, 32, 32)
    again = load_bundle(tiny_run.bundle)
    assert torch.equal(bundle.model(x), again.model(x))
    assert load_bundle(tiny_run.bundle / "model.json").meta == bundle.meta


def test_altered_weights_are_detected(copy: Path) -> None:
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="altered since the bundle was written"):
        load_bundle(copy)


def test_edited_contract_is_detected(copy: Path) -> None:
    meta = json.loads((copy / "model.json").read_text())
    meta["preprocessing"]["image_size"] = 64
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="no longer match the weights"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda b: (b / "model.json").unlink(), "model.json is missing"),
        (lambda b: (b / "model.json").write_text("{not json"), "not valid JSON"),
        (lambda b: (b / "model.json").write_text('{"format": "x"}'), "not a valid bundle"),
    ],
)
def test_broken_bundles_say_what_is_wrong(copy: Path, damage: object, message: str) -> None:
    damage(copy)  # type: ignore[operator]
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_missing_folder_and_missing_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "nope")
    monkeypatch.setattr(bundle_module, "DEFAULT_BUNDLE", tmp_path / "none")
    with pytest.raises(BundleError, match="no default model"):
        load_bundle(None)
