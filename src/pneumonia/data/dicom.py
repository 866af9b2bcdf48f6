"""DICOM through the door: one grayscale frame, windowed as its header says, within budget.

pydicom reads the file: modality LUT, then the header's linear window mapped onto 0..255 as a
display shows it (a VOI LUT, a sigmoid window or none: the result's own range), MONOCHROME1
inverted so bone is bright. Compressed pixel data (JPEG, JPEG-LS, JPEG 2000, RLE: every syntax
an archive holds for CR and DX) is decoded by `pneumonia.data.dicom_codecs`; a syntax it does
not know is refused by name. Multi-frame and colour DICOM are refused. Before pydicom decodes
anything, the size is checked: a deflated file (the Deflated Explicit VR Little Endian transfer
syntax, whose whole dataset is compressed) is inflated under a cap, and the pixel data's
decoded size (rows x columns x samples x bits allocated) is checked from the header. Nothing
from a header other than the pixel description is ever logged, returned or put in an error.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core.errors import ImageError, ImageTooLargeError
from pneumonia.data.dicom_codecs import decode_pixels
from pneumonia.data.formats import Budget, DecodedImage
from pneumonia.data.levels import to_uint8_range

DEFLATED = "1.2.840.10008.1.2.1.99"
HEADER_SLACK = 1 << 20  # bytes a dataset may hold beside its pixel data
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}


def transfer_syntax(data: bytes) -> tuple[str | None, int]:
    """(the file meta group's transfer syntax UID or None, where the dataset after it starts),
    read without pydicom (the meta group is always explicit VR little endian)."""
    pos = 132 if data[128:132] == b"DICM" else 0
    syntax = None
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break  # cut short: pydicom says what is wrong
            (length,) = struct.unpack_from("<I", data, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            start = pos + 8
        if element == 0x0010:
            syntax = data[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return syntax, pos


def check_inflated(data: bytes, path: str | Path, budget: int) -> None:
    """A deflated DICOM whose dataset would inflate to more than `budget` bytes is refused
    after inflating a little over `budget` of them, a megabyte at a time (never held)."""
    syntax, start = transfer_syntax(data)
    if syntax != DEFLATED:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total = data[start:], 0
    try:
        while pending and total <= budget:  # counted a megabyte at a time, none of it kept
            total += len(inflater.decompress(pending, 1 << 20))
            pending = inflater.unconsumed_tail
    except zlib.error:
        raise ImageError(path, "deflated DICOM that does not inflate") from None
    if total > budget:
        raise ImageTooLargeError(
            path, f"deflated DICOM that inflates to over {budget:,} bytes (a decompression bomb?)"
        )


def _dataset(data: bytes, path: str | Path) -> Any:
    from pydicom import dcmread

    try:
        return dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageError(path, f"not a readable DICOM file ({type(exc).__name__})") from None


def _linear_window(arr: np.ndarray, ds: Any) -> np.ndarray | None:
    """The header's first window (LINEAR or LINEAR_EXACT VOI function) mapped onto 0..255, as
    a display shows it: below the window black, above it white. None without such a window
    (a VOI LUT, a SIGMOID function or no window: `apply_voi_lut`, then the data's range)."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds or "VOILUTSequence" in ds:
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    if function not in ("LINEAR", "LINEAR_EXACT"):
        return None
    center, width = (
        float(v[0] if v.VM > 1 else v.value) for v in (ds["WindowCenter"], ds["WindowWidth"])
    )
    if function == "LINEAR":  # PS3.3 C.11.2.1.2.1
        center, width = center - 0.5, width - 1
    if width <= 0:
        return None
    scaled = (np.asarray(arr, dtype=np.float32) - np.float32(center - width / 2)) * np.float32(
        255.0 / width
    )
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def _pixel_bytes(ds: Any) -> int:
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    return int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * samples * max(1, bits // 8)


def decode_dicom(data: bytes, path: str | Path, budget: Budget | None = None) -> DecodedImage:
    """A single-frame grayscale DICOM -> 8-bit pixels, windowed as its header says; sizes
    checked before anything is inflated or decoded (see the module's doc)."""
    budget = budget or Budget()
    check_inflated(data, path, budget.inflated(HEADER_SLACK))
    return decode_dataset(_dataset(data, path), path, budget)


def decode_dataset(ds: Any, path: str | Path, budget: Budget | None = None) -> DecodedImage:
    """A parsed dataset (from a file, or received by the DICOM node) -> 8-bit grayscale
    pixels, windowed as its header says; its size checked from the header first. Every
    transfer syntax of `dicom_codecs.SUPPORTED` is decoded; any other is refused by name."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds:
        if "SOPClassUID" not in ds and "Modality" not in ds:  # nothing a DICOM file names
            raise ImageError(path, "not a DICOM file (no DICOM header could be read)")
        raise ImageError(path, "DICOM file has no pixel data (a report or structured document?)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(path, f"multi-frame DICOM ({frames} frames); export the frontal image")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(path, f"colour DICOM ({photometric or 'unknown'}); X-rays are grayscale")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    (budget or Budget()).check(path, cols, rows, _pixel_bytes(ds))
    try:
        stored = decode_pixels(ds)
    except ValueError as exc:
        raise ImageError(path, f"cannot decode DICOM pixels: {exc}") from None
    try:
        arr = apply_modality_lut(stored, ds)
        pixels = _linear_window(arr, ds)
        if pixels is None:
            pixels = to_uint8_range(apply_voi_lut(arr, ds))
    except Exception as exc:  # a broken LUT or window in the header
        reason = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        raise ImageError(
            path, f"cannot apply the DICOM header's LUT or window ({reason[0]})"
        ) from None
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageError(path, f"DICOM pixel data has shape {pixels.shape}, not one 2-D image")
    bits = int(ds.get("BitsStored", 8))
    return DecodedImage(pixels, cols, rows, f"{photometric} {bits}-bit", "DICOM")
