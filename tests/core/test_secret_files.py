"""The one reader of secret files: its content, or an error naming the file but not the secret."""

from pathlib import Path

import pytest

from pneumonia.core.errors import PneumoniaError
from pneumonia.core.secret_files import read_secret_file


def test_a_secret_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("first-line-secret\nsecond\n")
    assert read_secret_file(path, "token file") == "first-line-secret\nsecond\n"


def test_an_unreadable_secret_is_named_by_file_and_kind_never_by_content(tmp_path: Path) -> None:
    with pytest.raises(PneumoniaError, match=r"missing: cannot read the token file \(No such"):
        read_secret_file(tmp_path / "missing", "token file")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xffsecret-bytes\xfe")
    with pytest.raises(PneumoniaError, match="UnicodeDecodeError") as caught:
        read_secret_file(binary, "log's password file")
    assert "secret-bytes" not in str(caught.value)
