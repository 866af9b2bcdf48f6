"""A Lightning `DataModule` over a split manifest and its prepared cache.

Training batches get X-ray-appropriate augmentation (small rotations, scale/translate,
brightness/contrast; no mirror unless asked) and one of the three standard answers to class
imbalance: class-weighted loss (`class_weights`), a weighted sampler, or undersampling.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import torch
from lightning import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from pneumonia.core import LABELS, SUBTYPES
from pneumonia.core.config import DataConfig
from pneumonia.core.errors import DataError
from pneumonia.core.preprocess import Preprocessing
from pneumonia.data.cache import cache_dir_for, cached_array_path, read_failed
from pneumonia.data.discover import subtype_of
from pneumonia.data.split import Row, read_manifest
from pneumonia.modeling.augment import build_augment
from pneumonia.modeling.paired import PairedImages, paired_squares

log = logging.getLogger(__name__)


def subtype_codes(rows: list[Row]) -> list[int]:
    """Per row, the index of its pneumonia subtype in SUBTYPES (0 bacterial, 1 viral), or -1
    where there is none (NORMAL) or the file name does not say."""
    found = (subtype_of(r.path, r.label) for r in rows)
    return [SUBTYPES.index(s) if s is not None else -1 for s in found]


class CachedImages(Dataset[tuple[torch.Tensor, int, int]]):
    """Manifest rows read from the cache: (normalised 1xHxW tensor, label index, subtype
    index or -1; see `subtype_codes`)."""

    def __init__(
        self,
        rows: list[Row],
        cache_dir: Path,
        contract: Preprocessing,
        augment: torch.nn.Module | None = None,
    ) -> None:
        self.rows = rows
        self.paths = [cached_array_path(cache_dir, r.sha256) for r in rows]
        self.labels = [LABELS.index(r.label) for r in rows]
        self.subtypes = subtype_codes(rows)
        self.contract = contract
        self.augment = augment

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x = torch.from_numpy(np.load(self.paths[i])).float().div_(255.0).unsqueeze(0)
        if self.augment is not None:
            x = self.augment(x).clamp_(0.0, 1.0)
        return (x - self.contract.mean) / self.contract.std, self.labels[i], self.subtypes[i]


class UndersampleSampler(Sampler[int]):
    """Each epoch: every minority-class index plus an equal random draw of each other class."""

    def __init__(self, labels: list[int], seed: int = 0) -> None:
        self.by_class = [np.flatnonzero(np.asarray(labels) == c) for c in range(len(LABELS))]
        self.per_class = min(len(ix) for ix in self.by_class)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.per_class * len(self.by_class)

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at every epoch's start: a resumed run draws the same epochs."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        chosen = np.concatenate(
            [rng.choice(ix, self.per_class, replace=False) for ix in self.by_class]
        )
        yield from rng.permutation(chosen).tolist()


class XrayDataModule(LightningDataModule):
    """Train/val/test loaders from the manifest and cache named in the config."""

    def __init__(self, data: DataConfig, contract: Preprocessing) -> None:
        super().__init__()
        self.cfg = data
        self.contract = contract
        # shuffles the training batches; its state travels with checkpoints (rng_state.py)
        self.generator = torch.Generator().manual_seed(data.seed)
        self.cache_dir = cache_dir_for(data.cache_dir, contract)
        self.rows: dict[str, list[Row]] = {}
        self._pairs: PairedImages | None = None

    def setup(self, stage: str | None = None) -> None:
        """Read the manifest, keep the rows the cache holds, drop (and log) failed images."""
        if self.rows:
            return
        rows = read_manifest(self.cfg.manifest)
        failed = read_failed(self.cache_dir)
        usable, missing = [], []
        for r in rows:
            if cached_array_path(self.cache_dir, r.sha256).is_file():
                usable.append(r)
            elif r.path in failed:
                log.warning("excluded %s: %s", r.path, failed[r.path])
            else:
                missing.append(r)
        if missing:
            raise DataError(
                f"{self.cache_dir}: {len(missing)} manifest images are not cached (first: "
                f"{missing[0].path}); run `pneumonia data prepare` with the same settings"
            )
        for split in ("train", "val", "test"):
            self.rows[split] = [r for r in usable if r.split == split]
        if not self.rows["train"]:
            raise DataError(f"{self.cfg.manifest}: no training images")

    def leave_out(self, keys: Collection[tuple[str, str]], split: str = "train") -> int:
        """Drop the rows of `split` whose (sha256, label) is in `keys` (an audit's likely
        label errors); returns how many went."""
        kept = [r for r in self.rows[split] if (r.sha256, r.label) not in keys]
        dropped = len(self.rows[split]) - len(kept)
        self.rows[split] = kept
        log.info("left out %d %s images flagged by the label audit", dropped, split)
        return dropped

    def class_weights(self) -> torch.Tensor:
        """'balanced' loss weights per class (n / (classes * count)), for `class_weights`."""
        y = np.array([LABELS.index(r.label) for r in self.rows["train"]])
        weights = compute_class_weight("balanced", classes=np.arange(len(LABELS)), y=y)
        return torch.tensor(weights, dtype=torch.float32)

    def subtype_weight(self) -> float:
        """pos_weight of the subtype loss: training bacterial over viral images, so that the
        two subtypes weigh the same. Fails, naming the fix, when the names carry none."""
        codes = np.array(subtype_codes(self.rows["train"]))
        counts = np.bincount(codes[codes >= 0], minlength=len(SUBTYPES))
        if counts.min() == 0:
            raise DataError(
                f"{self.cfg.manifest}: data.subtype needs bacterial and viral PNEUMONIA images "
                f"in training (the file names say: {counts[0]} bacterial, {counts[1]} viral); "
                "name them as the Kaggle copies are (person1_bacteria_1.jpeg) or set "
                "data.subtype=false"
            )
        return float(counts[0] / counts[1])

    def dataset(self, split: str, augment: bool = False) -> CachedImages:
        """The dataset of one split, optionally with training augmentation."""
        aug = build_augment(self.cfg.augment, self.contract.resize) if augment else None
        return CachedImages(self.rows[split], self.cache_dir, self.contract, aug)

    def _loader(self, ds: CachedImages, **kwargs: object) -> DataLoader:
        workers = self.cfg.loader_workers()
        return DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            **kwargs,  # type: ignore[arg-type]
        )

    def pairs(self) -> PairedImages:
        """The training copies paired with their other renderings (`data.pairs`), augmented
        alike; read once."""
        if self._pairs is None:
            copies, others, labels = paired_squares(
                self.rows["train"], self.cfg.pairs, self.contract, self.cache_dir
            )
            aug = build_augment(self.cfg.augment, self.contract.resize)
            self._pairs = PairedImages(copies, others, labels, self.contract, aug)
        return self._pairs

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        """Augmented training batches, balanced as `data.balance` says; with `data.pairs`, a
        {"images", "pairs"} batch each step, the pairs cycled as often as needed."""
        images = self._images_loader()
        if self.cfg.pairs.originals is None:
            return images
        generator = torch.Generator().manual_seed(self.cfg.seed + 1)
        pairs = DataLoader(
            self.pairs(), batch_size=self.cfg.pairs.batch_size, shuffle=True, generator=generator
        )
        return CombinedLoader({"images": images, "pairs": pairs}, mode="max_size_cycle")

    def _images_loader(self) -> DataLoader:
        ds = self.dataset("train", augment=True)
        generator = self.generator.manual_seed(self.cfg.seed)
        if self.cfg.balance == "sampler":
            counts = np.bincount(ds.labels, minlength=len(LABELS))
            weights = [1.0 / counts[y] for y in ds.labels]
            sampler: Sampler[int] = WeightedRandomSampler(weights, len(ds), generator=generator)
            return self._loader(ds, sampler=sampler)
        if self.cfg.balance == "undersample":
            return self._loader(ds, sampler=UndersampleSampler(ds.labels, self.cfg.seed))
        return self._loader(ds, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in manifest order, no augmentation."""
        if not self.rows["val"]:
            raise DataError(f"{self.cfg.manifest}: no validation images")
        return self._loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        """Test batches in manifest order, no augmentation."""
        if not self.rows["test"]:
            raise DataError(f"{self.cfg.manifest}: no test images")
        return self._loader(self.dataset("test"))
