"""Paired renderings for the consistency term (`train.consistency`): a training copy and
another file of the same film (its original), both through the contract, augmented alike.

A pair is a training row and the file of the same name in `data.pairs.originals` (only the
names `data.pairs.only` lists, when given), with the same label. Validation rows never pair.
The copies come from the prepared cache; the other files are read once through the input
door and squared by the contract, as a user's file is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pneumonia.core import LABELS
from pneumonia.core.config import PairsConfig
from pneumonia.core.errors import DataError, ImageError
from pneumonia.core.preprocess import Preprocessing
from pneumonia.data.cache import cached_array_path
from pneumonia.data.discover import Sample, discover, name_list
from pneumonia.data.image_io import load_gray
from pneumonia.data.split import Row

log = logging.getLogger(__name__)


def _others_by_name(cfg: PairsConfig) -> dict[str, Sample]:
    """The other renderings by file name; a name found twice pairs with neither (logged)."""
    assert cfg.originals is not None
    wanted = name_list(cfg.only) if cfg.only is not None else None
    by_name: dict[str, list[Sample]] = {}
    for s in discover(cfg.originals).samples:
        name = Path(s.path).name
        if wanted is None or name in wanted:
            by_name.setdefault(name, []).append(s)
    for name, found in by_name.items():
        if len(found) > 1:
            log.warning(
                "pairs: %d files named %s in %s; none used", len(found), name, cfg.originals
            )
    return {name: found[0] for name, found in by_name.items() if len(found) == 1}


def paired_squares(
    rows: list[Row], cfg: PairsConfig, contract: Preprocessing, cache_dir: Path
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(copies, other renderings, label indices) of the training rows that pair: two uint8
    arrays (N, side, side). An unreadable file or a label that disagrees is logged and left
    out; no pair at all is an error naming the folder."""
    others = _others_by_name(cfg)
    copies, renders, labels = [], [], []
    for row in rows:
        other = others.get(Path(row.path).name)
        if other is None:
            continue
        if other.label != row.label:
            log.warning(
                "pairs: left out %s: labelled %s, its copy %s", other.path, other.label, row.label
            )
            continue
        try:
            square = contract.square(load_gray(other.path))
        except ImageError as exc:
            log.warning("pairs: left out %s: %s", other.path, exc.reason)
            continue
        copies.append(np.load(cached_array_path(cache_dir, row.sha256)))
        renders.append(square)
        labels.append(LABELS.index(row.label))
    if not copies:
        listed = f" among the names {cfg.only} lists" if cfg.only is not None else ""
        raise DataError(
            f"{cfg.originals}: no readable file is named as a training image{listed}; "
            "data.pairs needs other renderings named as the training copies"
        )
    log.info("pairs: %d training images paired with their files in %s", len(copies), cfg.originals)
    return np.stack(copies), np.stack(renders), labels


class PairedImages(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """(copy, other rendering, label index): normalised 1xHxW tensors, the same random
    augmentation applied to both (the generator's state replayed)."""

    def __init__(
        self,
        copies: np.ndarray,
        others: np.ndarray,
        labels: list[int],
        contract: Preprocessing,
        augment: torch.nn.Module | None = None,
    ) -> None:
        self.copies, self.others, self.labels = copies, others, labels
        self.contract = contract
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def _tensor(self, square: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(square).float().div_(255.0).unsqueeze(0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        copy, other = self._tensor(self.copies[i]), self._tensor(self.others[i])
        if self.augment is not None:
            state = torch.get_rng_state()
            copy = self.augment(copy).clamp_(0.0, 1.0)
            torch.set_rng_state(state)
            other = self.augment(other).clamp_(0.0, 1.0)
        mean, std = self.contract.mean, self.contract.std
        return (copy - mean) / std, (other - mean) / std, self.labels[i]
