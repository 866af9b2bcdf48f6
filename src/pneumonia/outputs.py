"""Output folders: created on demand, never silently overwritten."""

from __future__ import annotations

from pathlib import Path

from pneumonia.errors import PneumoniaError


def fresh_dir(path: str | Path, force: bool = False) -> Path:
    """Create `path` for new outputs; refuse a non-empty existing folder unless `force`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PneumoniaError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise PneumoniaError(f"{path}: folder already has files; use --force to overwrite them")
    path.mkdir(parents=True, exist_ok=True)
    return path
