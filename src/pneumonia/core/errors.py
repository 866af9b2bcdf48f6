"""Exceptions that carry a message meant for the user: the CLI prints them as one line."""

from __future__ import annotations

from pathlib import Path


class PneumoniaError(Exception):
    """Base class for every error the user should see as one clear line."""


class ConfigError(PneumoniaError):
    """A configuration file or override is invalid."""


class DataError(PneumoniaError):
    """A dataset folder, manifest or cache cannot be used."""


class BundleError(PneumoniaError):
    """A bundle is missing, incomplete, altered or unreadable."""


class ImageError(PneumoniaError):
    """One image cannot be read; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTooLargeError(ImageError):
    """An image over a size limit (bytes or decoded pixels); refused before decoding."""


class UnsupportedFormatError(ImageError):
    """A file that is not one of the formats the door reads (JPEG, PNG, DICOM, TIFF, BMP)."""


class OfflineError(PneumoniaError):
    """Something needs the network and there is none."""


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (of the database's own error under SQLAlchemy's,
    without its background link), or its type's name when it says nothing."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
