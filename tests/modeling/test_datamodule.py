"""The DataModule: normalised batches from the cache, augmentation, and imbalance answers."""

import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from pneumonia.core.config import Config
from pneumonia.core.errors import DataError
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import make_manifest, read_manifest, write_manifest
from pneumonia.data.synthetic import make_dataset
from pneumonia.modeling.datamodule import UndersampleSampler, XrayDataModule


def _config(tmp_path: Path, *overrides: str) -> Config:
    return tiny_config(tmp_path, "data.batch_size=8", "data.val_fraction=0.2", *overrides)


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    per = {"train": {"NORMAL": 10, "PNEUMONIA": 30}, "test": {"NORMAL": 2, "PNEUMONIA": 2}}
    make_dataset(tmp_path / "d", "kaggle", per, size_range=(30, 50))
    cfg = _config(tmp_path)
    rows, _ = make_manifest(tmp_path / "d", 0.2, 0, workers=1, show=False)
    write_manifest(rows, cfg.data.manifest)
    prepare_cache(rows, cfg.data.cache_dir, cfg.preprocess, workers=1, show=False)
    return tmp_path


def test_batches_are_normalised_1x_size_tensors(prepared: Path) -> None:
    cfg = _config(prepared)
    dm = XrayDataModule(cfg.data, cfg.preprocess)
    dm.setup("fit")
    x, y, s = next(iter(dm.val_dataloader()))
    assert x.shape[1:] == (1, 32, 32) and x.dtype == torch.float32
    raw = x * cfg.preprocess.std + cfg.preprocess.mean
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert set(y.tolist()) <= {0, 1}
    assert ((s == -1) == (y == 0)).all() and set(s.tolist()) <= {-1, 0, 1}  # subtype: PNEUMONIA
    assert len(dm.rows["test"]) == 4
    assert sum(len(v) for v in dm.rows.values()) == 44


def test_class_weights_are_balanced(prepared: Path) -> None:
    cfg = _config(prepared)
    dm = XrayDataModule(cfg.data, cfg.preprocess)
    dm.setup("fit")
    counts = Counter(r.label for r in dm.rows["train"])
    w = dm.class_weights()
    assert w[0] * counts["NORMAL"] == pytest.approx(w[1] * counts["PNEUMONIA"])
    assert w[0] > w[1]


@pytest.mark.parametrize("balance", ["sampler", "undersample"])
def test_balanced_loaders_draw_both_classes_evenly(prepared: Path, balance: str) -> None:
    torch.manual_seed(0)
    cfg = _config(prepared, f"data.balance={balance}")
    dm = XrayDataModule(cfg.data, cfg.preprocess)
    dm.setup("fit")
    labels = torch.cat([y for _, y, _ in dm.train_dataloader()]).tolist()
    share = sum(labels) / len(labels)
    assert 0.3 < share < 0.7  # versus 0.75 pneumonia in the data
    if balance == "undersample":
        assert share == 0.5


def test_undersampler_varies_by_epoch() -> None:
    sampler = UndersampleSampler([0] * 3 + [1] * 20, seed=1)
    first, second = list(sampler), list(sampler)
    assert len(first) == 6 and sorted(first)[:3] == [0, 1, 2]
    assert first != second


def test_missing_cache_says_to_prepare(prepared: Path) -> None:
    cfg = _config(prepared, "preprocess.image_size=48")  # never prepared at this size
    with pytest.raises(DataError, match="data prepare"):
        XrayDataModule(cfg.data, cfg.preprocess).setup("fit")


def test_failed_images_are_excluded_with_the_rest_kept(prepared: Path) -> None:
    cfg = _config(prepared)
    rows = read_manifest(cfg.data.manifest)
    victim = next(r for r in rows if r.split == "train")
    Path(victim.path).write_bytes(b"garbage")
    shutil.rmtree(cfg.data.cache_dir)
    prepare_cache(rows, cfg.data.cache_dir, cfg.preprocess, workers=1, show=False)
    dm = XrayDataModule(cfg.data, cfg.preprocess)
    dm.setup("fit")
    assert victim.path not in {r.path for r in dm.rows["train"]}
    assert sum(len(v) for v in dm.rows.values()) == 43
