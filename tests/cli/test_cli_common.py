"""Shared CLI pieces: errors of the machine are one line that names the file, not a bug."""

import errno

import pytest
import typer

from pneumonia.cli.common import user_errors


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/model/model.safetensors"),
            "/model/model.safetensors: permission denied for user id",
        ),
        (OSError(errno.ENOSPC, "No space left on device", "runs/r/bundle"), "no space left"),
        (OSError(errno.EROFS, "Read-only file system", "/data/out"), "/data/out: read-only"),
    ],
)
def test_machine_errors_are_one_line_naming_the_file(
    error: OSError, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as exit_info:
        user_errors(command)()
    assert exit_info.value.exit_code == 1
    stderr = capsys.readouterr().err
    assert words in stderr and "Traceback" not in stderr and len(stderr.splitlines()) == 1


def test_other_os_errors_stay_bugs() -> None:
    def command() -> None:
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        user_errors(command)()
