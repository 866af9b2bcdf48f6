"""`pneumonia dicom-node`'s command line: what it refuses before it listens."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pneumonia.cli import app


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([], "--allow AET"),
        (["--allow", "ORTHANC", "--store-to", "nonsense"], "expected AET@HOST:PORT"),
        (["--allow", "ORTHANC", "--age-range", "9-3"], "LOW-HIGH"),
        (["--allow", "A-TITLE-FAR-TOO-LONG"], "1 to 16 characters"),
    ],
)
def test_bad_options_are_refused_in_one_line(tmp_path: Path, args: list[str], said: str) -> None:
    result = CliRunner().invoke(app, ["dicom-node", "--spool", str(tmp_path / "spool"), *args])
    assert result.exit_code != 0 and said in result.output
    assert "Traceback" not in result.output and not (tmp_path / "spool").exists()
