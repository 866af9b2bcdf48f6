"""What one request may carry, and how an upload becomes pixels without taking the server down.

Every upload is capped in bytes as it is read, recognised by its first bytes (JPEG, PNG,
DICOM, TIFF, BMP; anything else is 415, naming those), and checked from its header against
the pixel and decoded-byte budgets before any pixel is decoded (413). At most `decode_slots`
uploads are decoded at once, so the memory decoding can take is bounded: about
`decode_slots` x 3 x `max_decoded_bytes` (a decoded image, its grey conversion and the
contract's copies).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field

import numpy as np
from fastapi import UploadFile

from pneumonia.core.errors import ImageError, ImageTooLargeError, UnsupportedFormatError
from pneumonia.data.formats import Budget
from pneumonia.data.image_io import decode_image


@dataclass(frozen=True)
class Limits:
    """What one request may carry (the API docs state these)."""

    max_bytes: int = 32 * 1024 * 1024  # per file, as uploaded
    max_pixels: int = 25_000_000  # decoded width x height, from the header (5000 x 5000)
    max_decoded_bytes: int = 64 * 1024 * 1024  # decoded pixels of one file, from the header
    max_files: int = 8  # per request
    max_body_bytes: int = 64 * 1024 * 1024  # a whole request, judged from Content-Length
    decode_slots: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))


class UploadProblem(Exception):  # noqa: N818 - answered as an HTTP error, not raised to users
    """An upload that gets a JSON error with `status`."""

    def __init__(self, status: int, filename: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.filename, self.reason = status, filename, reason


def shown_name(filename: str | None, limit: int = 120) -> str:
    """An uploaded file's name as answers show it: its last path part, control characters
    replaced, at most `limit` characters ("upload" when it has none)."""
    name = re.sub(r"[\x00-\x1f\x7f]", "?", (filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    return name[:limit] or "upload"


class Decoder:
    """Reads and decodes uploads under `Limits`, at most `decode_slots` at a time."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.decode_slots)

    def read(self, upload: UploadFile) -> tuple[str, bytes]:
        """(file name, bytes); 413 when the file is over the byte cap (read no further)."""
        name = shown_name(upload.filename)
        data = upload.file.read(self.limits.max_bytes + 1)
        if len(data) > self.limits.max_bytes:
            raise UploadProblem(413, name, f"file is over the {self.limits.max_bytes:,}-byte limit")
        return name, data

    def gray(self, name: str, data: bytes) -> np.ndarray:
        """Decoded grayscale pixels; 413 over a budget, 415 not a readable image."""
        limits = self.limits
        with self._slots:
            try:
                budget = Budget(limits.max_pixels, limits.max_decoded_bytes)
                return decode_image(data, name, budget).pixels
            except ImageTooLargeError as exc:
                raise UploadProblem(413, name, exc.reason) from None
            except (UnsupportedFormatError, ImageError) as exc:
                raise UploadProblem(415, name, exc.reason) from None
