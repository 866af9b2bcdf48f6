"""Output folders and files: created on demand, never silently overwritten, readable as
any file the user writes."""

from __future__ import annotations

import os
from pathlib import Path

from pneumonia.core.errors import PneumoniaError


def fresh_dir(path: str | Path, force: bool = False) -> Path:
    """Create `path` for new outputs; refuse a non-empty existing folder unless `force`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PneumoniaError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise PneumoniaError(f"{path}: folder already has files; use --force to overwrite them")
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_folder(path: str | Path, what: str = "bundle") -> Path:
    """`path` as the folder a new `what` will be written into: refused, naming it, when
    anything is there already (a bundle is never written over another)."""
    path = Path(path)
    if path.exists():
        raise PneumoniaError(f"{path}: already exists; choose a new folder for the {what}")
    return path


def _read_umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():  # Linux: read, not set
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it back
    os.umask(mask)
    return mask


def plain_mode(path: str | Path) -> Path:
    """Give a file the mode `open()` would have given it (0666 less the umask). Writers that
    go through a private temporary file (safetensors, `tempfile.mkstemp`) leave 0600, which
    another user, such as a container's, cannot read."""
    try:
        mask = _read_umask()
    except OSError:
        mask = 0o022
    path = Path(path)
    path.chmod(0o666 & ~mask)
    return path
