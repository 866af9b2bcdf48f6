"""`pneumonia data prepare`: decode every image once into a cache of uint8 arrays.

Each image is stored as `<cache>/<settings key>/<sha[:2]>/<sha>.npy`, keyed by its content hash
and the preprocessing settings that change pixels (size, resize mode). A changed setting gets
a new folder and is rebuilt; an unchanged one is reused. Files that fail to decode are listed
in `failed.json` and excluded; the rest are cached.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pneumonia.core.errors import ImageError
from pneumonia.core.outputs import plain_mode
from pneumonia.core.preprocess import Preprocessing
from pneumonia.core.progress import parallel_map
from pneumonia.data.discover import Problem
from pneumonia.data.image_io import read_image
from pneumonia.data.split import Row

log = logging.getLogger(__name__)


@dataclass
class PrepareSummary:
    """What `prepare_cache` did."""

    cache_dir: Path
    built: int = 0
    reused: int = 0
    failed: list[Problem] = field(default_factory=list)


def cache_dir_for(cache_root: str | Path, contract: Preprocessing) -> Path:
    """Folder that holds the arrays for these preprocessing settings."""
    return Path(cache_root) / contract.cache_key()


def cached_array_path(cache_dir: Path, sha256: str) -> Path:
    """Where the array of the image with content hash `sha256` lives."""
    return cache_dir / sha256[:2] / f"{sha256}.npy"


def _save_atomic(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        plain_mode(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prepare_one(job: tuple[str, str, Path, Preprocessing]) -> str | Problem:
    path, sha, target, contract = job
    if target.is_file():
        return "reused"
    try:
        digest, img = read_image(path)
    except ImageError as exc:
        return Problem(exc.path, exc.reason)
    if digest != sha:
        return Problem(path, "content changed since the manifest was made; re-run `data split`")
    try:
        _save_atomic(contract.square(img.pixels), target)
    except OSError as exc:
        return Problem(str(target), f"cannot write cache file ({exc.strerror or exc})")
    return "built"


def prepare_cache(
    rows: list[Row],
    cache_root: str | Path,
    contract: Preprocessing,
    workers: int | None = None,
    show: bool = True,
) -> PrepareSummary:
    """Decode and resize every manifest image not yet cached under these settings."""
    cache_dir = cache_dir_for(cache_root, contract)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "preprocessing.json").write_text(
        json.dumps({"key": contract.cache_key(), **contract.describe()}, indent=2)
    )
    unique = {r.sha256: r.path for r in rows}
    jobs = [
        (path, sha, cached_array_path(cache_dir, sha), contract)
        for sha, path in sorted(unique.items())
    ]
    summary = PrepareSummary(cache_dir)
    for result in parallel_map(_prepare_one, jobs, "caching", workers, show):
        if isinstance(result, Problem):
            summary.failed.append(result)
        elif result == "built":
            summary.built += 1
        else:
            summary.reused += 1
    failed = {p.path: p.message for p in summary.failed}
    (cache_dir / "failed.json").write_text(json.dumps(failed, indent=2, sort_keys=True))
    return summary


def read_failed(cache_dir: Path) -> dict[str, str]:
    """Images that `prepare_cache` could not decode: path -> reason."""
    path = cache_dir / "failed.json"
    return json.loads(path.read_text()) if path.is_file() else {}
