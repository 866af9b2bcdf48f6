"""Output folders: made on demand, never written over silently, files readable by others."""

import os
from pathlib import Path

import pytest

from pneumonia.core.errors import PneumoniaError
from pneumonia.core.outputs import fresh_dir, new_folder, plain_mode


def test_fresh_dir_makes_a_folder_and_refuses_a_full_one(tmp_path: Path) -> None:
    made = fresh_dir(tmp_path / "a" / "b")
    assert made.is_dir() and fresh_dir(made) == made  # empty: fine again
    (made / "x.txt").write_text("mine")
    with pytest.raises(PneumoniaError, match="--force"):
        fresh_dir(made)
    assert fresh_dir(made, force=True) == made and (made / "x.txt").read_text() == "mine"
    (tmp_path / "f").write_text("a file")
    with pytest.raises(PneumoniaError, match="not a folder"):
        fresh_dir(tmp_path / "f", force=True)


def test_new_folder_refuses_anything_already_there(tmp_path: Path) -> None:
    assert new_folder(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(
        PneumoniaError, match="old: already exists; choose a new folder for the site"
    ):
        new_folder(tmp_path / "old", "site bundle")


def test_plain_mode_gives_a_private_file_the_umasks_mode(tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_text("x")
    path.chmod(0o600)  # as safetensors and mkstemp leave files
    old = os.umask(0o027)
    try:
        plain_mode(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
