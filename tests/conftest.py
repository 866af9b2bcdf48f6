"""Shared fixtures: synthetic datasets made in the test, and the real data when it is present."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# CLI output is read by the tests: a wide console, so temporary paths of any length are never
# wrapped or cut (rich reads COLUMNS when the CLI's consoles are created, at import)
os.environ["COLUMNS"] = "240"

from pneumonia.core.config import Config, load_config
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import make_manifest, write_manifest
from pneumonia.data.synthetic import make_dataset
from pneumonia.modeling.loading import load_bundle
from pneumonia.training.train import train

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PNEUMONIA_SHARED", REPO.parent / "shared"))
SHARED_TRAIN = SHARED / "data" / "chest_xray"


@pytest.fixture
def shared_chest_xray() -> Path:
    """The shared Kaggle training split; the test is skipped when it is absent."""
    if not (SHARED_TRAIN / "train").is_dir():
        pytest.skip(f"{SHARED_TRAIN} is absent")
    return SHARED_TRAIN


def tiny_config(tmp: Path, *overrides: str) -> Config:
    """The real default config, shrunk: small CNN, 32-pixel images, a few CPU batches."""
    return load_config(
        None,
        [
            f"data.manifest={tmp / 'manifest.csv'}",
            f"data.cache_dir={tmp / 'cache'}",
            "data.batch_size=16",
            "data.num_workers=0",
            "data.val_fraction=0.25",
            "preprocess.image_size=32",
            "model.name=cnn_small",
            "model.pretrained=false",
            "train.epochs=2",
            "train.freeze_epochs=0",
            "train.frozen_stages=0",
            "operating.rule=youden",
            "train.progress=false",
            f"train.out_dir={tmp / 'runs'}",
            "train.run_name=tiny",
            "tracking.enabled=false",
            "audit.file=null",  # no label audit; the tests of the audit make their own
            "train.export_onnx=false",  # a PyTorch bundle; the tests of the export make their own
            *overrides,
        ],
    )


def prepare_tiny(tmp: Path, cfg: Config, seed: int = 0, subtypes: bool = False) -> Path:
    """A synthetic Kaggle-layout dataset, split and cached as `cfg` says; returns its root.
    With `subtypes`, PNEUMONIA images show the subtype their names give."""
    per = {"train": {"NORMAL": 24, "PNEUMONIA": 40}, "test": {"NORMAL": 8, "PNEUMONIA": 8}}
    root = make_dataset(
        tmp / "data", "kaggle", per, size_range=(32, 48), seed=seed, subtypes=subtypes
    )
    rows, _ = make_manifest(root, cfg.data.val_fraction, cfg.data.seed, workers=1, show=False)
    write_manifest(rows, cfg.data.manifest, force=True)
    prepare_cache(rows, cfg.data.cache_dir, cfg.preprocess, workers=1, show=False)
    return root


@dataclass
class TinyRun:
    """A model trained once per test session on synthetic data."""

    cfg: Config
    data: Path
    summary: dict[str, Any]

    @property
    def bundle(self) -> Path:
        return Path(self.summary["bundle"])


@pytest.fixture(scope="session", autouse=True)
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Runs that track without naming a store land in a temporary one, never in the repo."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlruns.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """Read-only: copy its bundle before changing it."""
    tmp = tmp_path_factory.mktemp("tiny_run")
    cfg = tiny_config(tmp)
    root = prepare_tiny(tmp, cfg)
    return TinyRun(cfg, root, train(cfg, command="pytest"))


@pytest.fixture
def exported(tiny_run: TinyRun, tmp_path: Path) -> Path:
    """A copy of the tiny bundle with its model.onnx, for the test to change as it likes."""
    from pneumonia.modeling.export import export_onnx

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_run.bundle, folder)
    export_onnx(load_bundle(folder))
    return folder


def unguarded_copy(bundle: Path, folder: Path) -> Path:
    """A copy of `bundle` as bundles were before the out-of-distribution guard existed."""
    shutil.copytree(bundle, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["guard"] = None
    del meta["files"]["guard.safetensors"]
    (folder / "guard.safetensors").unlink()
    (folder / "model.json").write_text(json.dumps(meta))
    return folder
