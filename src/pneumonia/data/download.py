"""`pneumonia data download`: fetch the Kaggle dataset with kagglehub, or say what to do offline."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from pneumonia.core.errors import OfflineError, PneumoniaError

log = logging.getLogger(__name__)

KAGGLE_DATASET = "paultimothymooney/chest-xray-pneumonia"
KAGGLE_HOST = "www.kaggle.com"


def manual_instructions(dest: Path) -> str:
    """What to do when the dataset cannot be fetched."""
    return (
        f"download https://www.kaggle.com/datasets/{KAGGLE_DATASET} by hand, unzip it into "
        f"{dest} (so that {dest}/chest_xray/train/NORMAL exists), then run "
        f"`pneumonia data check {dest}`"
    )


def is_online(host: str = KAGGLE_HOST, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to `host` can be opened quickly."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def download(dest: str | Path, dataset: str = KAGGLE_DATASET) -> Path:
    """Download `dataset` into `dest` with kagglehub; fails at once when offline."""
    dest = Path(dest)
    if not is_online():
        raise OfflineError(f"no network connection to {KAGGLE_HOST}: " + manual_instructions(dest))
    if dest.exists() and any(dest.iterdir()):
        raise PneumoniaError(f"{dest}: folder is not empty; choose another --dest or empty it")
    import kagglehub

    try:
        path = kagglehub.dataset_download(dataset, output_dir=str(dest))
    except Exception as exc:  # kagglehub raises many types (HTTP, auth, disk)
        raise PneumoniaError(
            f"kagglehub could not download {dataset} ({type(exc).__name__}: {exc}); "
            + manual_instructions(dest)
        ) from exc
    log.info("downloaded %s to %s", dataset, path)
    return Path(path)
