"""The DataModule: normalised batches from the cache, augmentation, and imbalance answers."""

import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from pneumonia.core.config import Config, load_config
from pneumonia.core.errors import DataError
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import make_manifest, read_manifest, write_manifest
from pneumonia.data.synthetic import make_dataset
from pneumonia.modeling.augment import build_augment
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


def test_augment_has_no_mirror_unless_asked() -> None:
    default = build_augment(Config().data.augment)
    assert not any("Flip" in type(t).__name__ for t in default.transforms)
    flips = build_augment(load_config(None, ["data.augment.hflip=true"]).data.augment)
    assert any("Flip" in type(t).__name__ for t in flips.transforms)
    x = torch.rand(1, 16, 16)
    assert build_augment(Config().data.augment)(x).shape == (1, 16, 16)


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


def test_aspect_stretch_letterboxes_wide_and_tall() -> None:
    from pneumonia.modeling.augment import AspectStretch

    x = torch.ones(1, 40, 40)
    wide = AspectStretch(2.0, 2.0)(x)  # twice as wide as tall: black bands top and bottom
    assert wide.shape == x.shape and wide[0, :9].max() == 0 and wide[0, -9:].max() == 0
    assert wide[0, 20].min() == pytest.approx(1.0) and wide[0, :, 0].sum() == pytest.approx(20)
    tall = AspectStretch(0.5, 0.5)(x)
    assert tall[0, :, :9].max() == 0 and tall[0, :, -9:].max() == 0
    torch.manual_seed(0)
    ratios = {int((AspectStretch(0.75, 1.6)(x)[0, :, 20] > 0).sum()) for _ in range(20)}
    assert len(ratios) > 3  # random within the range


def test_aspect_stretch_fill_keeps_the_frame_full() -> None:
    from pneumonia.modeling.augment import AspectStretch

    x = torch.zeros(1, 40, 40)
    x[0, :, 16:24] = 1.0  # a vertical bar 8 px wide in the middle
    wide = AspectStretch(1.5, 1.5, "fill")(x)  # content 1.5x wider, sides cut off
    assert wide.shape == x.shape
    assert int((wide[0, 20] > 0.5).sum()) == 12  # the bar is 1.5x as wide
    assert wide[0, :, 20].min() == pytest.approx(1.0)  # and still spans the full height
    y = torch.ones(1, 40, 40)
    for aspect in (0.6, 1.6):  # no black bands either way
        assert AspectStretch(aspect, aspect, "fill")(y).min() == pytest.approx(1.0)


def test_aspect_mode_follows_the_contract() -> None:
    cfg = Config().data.augment.model_copy(update={"aspect_p": 1.0})
    x = torch.ones(1, 32, 32)
    torch.manual_seed(0)
    letterboxed = [build_augment(cfg, "pad").transforms[0](x).min() for _ in range(10)]
    filled = [build_augment(cfg, "stretch").transforms[0](x).min() for _ in range(10)]
    assert min(letterboxed) == 0 and min(filled) == pytest.approx(1.0)
    forced = cfg.model_copy(update={"aspect_mode": "letterbox"})
    assert min(build_augment(forced, "stretch").transforms[0](x).min() for _ in range(10)) == 0


def test_random_gamma_stays_in_range_and_varies() -> None:
    from pneumonia.modeling.augment import RandomGamma

    torch.manual_seed(0)
    x = torch.linspace(0, 1, 101).reshape(1, 1, 101)
    outs = [RandomGamma(0.6)(x) for _ in range(20)]
    assert all(o.min() >= 0 and o.max() <= 1 for o in outs)
    mids = [float(o[0, 0, 50]) for o in outs]
    assert min(mids) < 0.45 and max(mids) > 0.55  # darker and brighter mid-tones
    assert min(mids) >= 0.5**1.6 - 1e-6 and max(mids) <= 0.5 ** (1 / 1.6) + 1e-6


def test_robust_augment_steps_appear_only_when_configured() -> None:
    off = ["data.augment.aspect_min=1", "data.augment.aspect_max=1", "data.augment.gamma=0"]
    names = [
        type(t).__name__ for t in build_augment(load_config(None, off).data.augment).transforms
    ]
    assert "AspectStretch" not in names and "RandomGamma" not in names
    keys = ["data.augment.aspect_min=0.75", "data.augment.aspect_max=1.6"]
    robust = load_config(None, [*keys, "data.augment.gamma=0.5", "data.augment.aspect_p=0.5"])
    names = [type(t).__name__ for t in build_augment(robust.data.augment).transforms]
    assert names[0] == "RandomApply" and "RandomGamma" in names
    assert build_augment(robust.data.augment)(torch.rand(1, 24, 24)).shape == (1, 24, 24)
