"""Paired renderings: training copies matched by name with their other files, augmented alike."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import paired_config, prepare_tiny, tiny_config, write_originals
from pneumonia.core.config import Config
from pneumonia.core.errors import ConfigError, DataError
from pneumonia.modeling.augment import build_augment
from pneumonia.modeling.datamodule import XrayDataModule
from pneumonia.modeling.paired import PairedImages, paired_squares


def _module(tmp_path: Path, cfg: Config) -> XrayDataModule:
    dm = XrayDataModule(cfg.data, cfg.preprocess)
    dm.setup("fit")
    return dm


def test_training_copies_pair_with_their_files_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = paired_config(tmp_path)
    prepare_tiny(tmp_path, cfg)
    dm = _module(tmp_path, cfg)
    train, val = dm.rows["train"], dm.rows["val"]
    originals = tmp_path / "originals"
    write_originals(train[:6] + val[:2], originals)  # validation rows never pair
    broken = originals / train[6].label / Path(train[6].path).name
    broken.write_bytes(b"not an image")
    other = "PNEUMONIA" if train[7].label == "NORMAL" else "NORMAL"
    (originals / other).mkdir(exist_ok=True)
    Image.new("L", (40, 40), 128).save(originals / other / Path(train[7].path).name)
    with caplog.at_level(logging.WARNING):
        copies, others, labels = paired_squares(train, cfg.data.pairs, cfg.preprocess, dm.cache_dir)
    assert copies.shape == others.shape == (6, 32, 32)
    assert labels == [["NORMAL", "PNEUMONIA"].index(r.label) for r in train[:6]]
    assert not np.array_equal(copies, others)  # the other rendering, not the copy again
    assert str(broken) in caplog.text and f"its copy {train[7].label}" in caplog.text

    only = tmp_path / "only.txt"
    only.write_text(f"{Path(train[0].path).name}\n\n{Path(train[3].path).name}\n")
    listed = paired_config(tmp_path, f"data.pairs.only={only}").data.pairs
    assert len(paired_squares(train, listed, cfg.preprocess, dm.cache_dir)[2]) == 2


def test_no_pair_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    cfg = paired_config(tmp_path)
    prepare_tiny(tmp_path, cfg)
    dm = _module(tmp_path, cfg)
    write_originals(dm.rows["val"][:2], tmp_path / "originals")
    with pytest.raises(DataError, match=r"originals: no readable file is named as a training"):
        paired_squares(dm.rows["train"], cfg.data.pairs, cfg.preprocess, dm.cache_dir)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    listed = paired_config(tmp_path, f"data.pairs.only={empty}").data.pairs
    with pytest.raises(DataError, match=r"empty\.txt: lists no file names"):
        paired_squares(dm.rows["train"], listed, cfg.preprocess, dm.cache_dir)


def test_a_pair_gets_the_same_augmentation_twice(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "data.augment.render_p=0.5")
    squares = np.random.default_rng(0).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    augment = build_augment(cfg.data.augment, cfg.preprocess.resize)
    same = PairedImages(squares, squares.copy(), [0, 1, 0, 1, 1], cfg.preprocess, augment)
    torch.manual_seed(0)
    for i in range(len(same)):
        copy, other, label = same[i]
        assert torch.equal(copy, other) and label == same.labels[i]
    unaugmented = PairedImages(squares, squares, [0] * 5, cfg.preprocess)[0][0]
    assert not torch.equal(same[0][0], unaugmented)  # the augmentation did change it


def test_pairs_join_every_training_step(tmp_path: Path) -> None:
    cfg = paired_config(tmp_path)
    prepare_tiny(tmp_path, cfg)
    dm = _module(tmp_path, cfg)
    write_originals(dm.rows["train"][:6], tmp_path / "originals")
    batches = list(iter(dm.train_dataloader()))
    assert len(batches) == -(-len(dm.rows["train"]) // cfg.data.batch_size)  # every image once
    for batch, *_ in batches:
        copy, other, _ = batch["pairs"]
        assert copy.shape == other.shape and copy.shape[1:] == (1, 32, 32)
        assert len(batch["images"][0]) <= cfg.data.batch_size


def test_pairs_and_consistency_go_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.pairs\.originals and train\.consistency go"):
        tiny_config(tmp_path, "train.consistency=1.0")
    with pytest.raises(ConfigError, match=r"data\.pairs\.originals and train\.consistency go"):
        tiny_config(tmp_path, f"data.pairs.originals={tmp_path}")
