"""Reading a secret from a file (a container secret, a token list): the one reader, whose
errors name the file and why it could not be read, never its content."""

from __future__ import annotations

from pathlib import Path

from pneumonia.core.errors import PneumoniaError


def read_secret_file(path: Path, what: str) -> str:
    """The text of the secret file `path`; a `PneumoniaError` naming it and `what` it holds
    when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise PneumoniaError(f"{path}: cannot read the {what} ({reason})") from None
