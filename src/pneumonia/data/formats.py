"""Which files the door opens, recognised by their first bytes, and what decoding them costs.

Only JPEG, PNG, DICOM, TIFF and BMP are read (`ALLOWED`), recognised by their magic bytes
before any decoder sees them (a DICOM file without its preamble only by a `.dcm` or `.dicom`
name); any other file is refused with `UnsupportedFormatError`, which names what it looks
like and the formats allowed. Pillow is then asked to open that one format and no other, so
none of its other plugins (EPS through Ghostscript, GIF, WebP, ICO, ...) ever runs.
`decoded_bytes` is what the pixels will take once decoded, known from the header alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pneumonia.core.errors import ImageError, ImageTooLargeError, UnsupportedFormatError

ALLOWED = ("JPEG", "PNG", "DICOM", "TIFF", "BMP")
DICOM_SUFFIXES = (".dcm", ".dicom")
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_KNOWN = (  # what a refused file looks like, for the message
    (b"GIF8", "GIF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"PK\x03\x04", "ZIP"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
)
BYTES_PER_PIXEL = {
    "1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3,
    "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4,
    "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
}  # fmt: skip


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: grayscale pixels plus what the file was before conversion."""

    pixels: np.ndarray  # 2-D uint8
    width: int
    height: int
    mode: str
    format: str


def sniff(data: bytes, path: str | Path) -> str:
    """The format of `data` by its first bytes (one of `ALLOWED`); anything else raises
    `UnsupportedFormatError` naming what it looks like and what is allowed."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "DICOM"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if Path(str(path)).suffix.lower() in DICOM_SUFFIXES:
        return "DICOM"  # Part 10 without its preamble: pydicom decides
    looks = next((name for magic, name in _KNOWN if data.startswith(magic)), None)
    if looks is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        looks = "WebP"
    if looks is None and data[4:8] == b"ftyp":
        looks = "HEIF/MP4"
    if looks is None and data.lstrip()[:1] == b"<":
        looks = "XML/SVG/HTML"
    what = f"a {looks} file" if looks else "not an image format this tool reads"
    raise UnsupportedFormatError(path, f"{what}; allowed: {', '.join(ALLOWED)}")


def decoded_bytes(mode: str, width: int, height: int, frames: int = 1) -> int:
    """Bytes the pixels of a `mode` image take once decoded (4 a pixel for unknown modes)."""
    return width * height * frames * BYTES_PER_PIXEL.get(mode, 4)


@dataclass(frozen=True)
class Budget:
    """What one image may cost once decoded, judged from its header before decoding: decoded
    width x height (None: Pillow's decompression-bomb limit) and decoded bytes (None: no
    limit but the pixels'; a deflated DICOM is then allowed 4 bytes a pixel)."""

    max_pixels: int | None = None
    max_bytes: int | None = None

    def pixels(self) -> int:
        """The pixel limit in force."""
        return self.max_pixels or Image.MAX_IMAGE_PIXELS or 0

    def inflated(self, slack: int) -> int:
        """How many bytes a compressed dataset may inflate to (its pixels plus `slack`)."""
        return (self.max_bytes or 4 * max(1, self.pixels())) + slack

    def check(self, path: str | Path, width: int, height: int, nbytes: int) -> None:
        """Refuse, before decoding, an image over the pixel limit or whose decoded pixels would
        take more than `max_bytes`."""
        limit = self.pixels()
        if width <= 0 or height <= 0:
            raise ImageError(path, f"image header says {width}x{height} pixels")
        if limit and width * height > limit:
            raise ImageTooLargeError(
                path,
                f"image is {width}x{height} = {width * height:,} pixels, over the {limit:,} limit",
            )
        if self.max_bytes and nbytes > self.max_bytes:
            over = f"over the {self.max_bytes:,} limit"
            raise ImageTooLargeError(
                path, f"its pixels would take {nbytes:,} bytes decoded, {over}"
            )
