"""Renderings of one X-ray as clinics hold it: the same film, other files.

The Kaggle copies every model here learns from are 224x224 JPEGs squashed from the originals;
a clinic or a research group holds the originals (400-2900 px, wider than tall), DICOM exports
of them (MONOCHROME1 or 2, 12 or 16 bits), 16-bit PNGs, downscaled and recompressed copies.
`render(name, data, pixels)` makes one of `RENDERINGS` from an original file's bytes and its
decoded 8-bit pixels, as file bytes, so that it reaches a model through the input door
(`image_io.decode_image`) exactly as a user's file would. `pneumonia pairs` scores them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pneumonia.core.errors import DataError


@dataclass(frozen=True)
class Rendering:
    """One way of storing an image: what it is, and how it is made from the original."""

    description: str
    make: Callable[[bytes, np.ndarray], bytes]


def dicom_bytes(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    window: tuple[float, float] | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    """A DICOM Part 10 file (DX, explicit VR little endian, uncompressed) of `pixels`
    (H x W; frames x H x W; or H x W x 3 with `photometric` RGB); `extra` header elements by
    keyword (tests put made-up patient details there)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    rgb = photometric == "RGB"
    frames = pixels.shape[0] if pixels.ndim == 3 and not rgb else 1
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if rgb else 16
    ds.BitsStored = 8 if rgb else bits_stored
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if rgb:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8 if rgb else np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _scaled(pixels: np.ndarray, bits: int) -> np.ndarray:
    """8-bit grey -> `bits`-bit integers over the same range (0 -> 0, 255 -> 2**bits - 1)."""
    top = 2**bits - 1
    return np.round(pixels.astype(np.float64) * (top / 255.0)).astype(np.uint16)


def _full_window(bits: int) -> tuple[float, float]:
    """The LINEAR window (center, width) that shows the whole `bits`-bit range, 0 to top."""
    return (2**bits - 1) / 2, float(2**bits)


def _dicom_m2_12(_: bytes, pixels: np.ndarray) -> bytes:
    return dicom_bytes(_scaled(pixels, 12), "MONOCHROME2", 12, _full_window(12))


def _dicom_m1_16(_: bytes, pixels: np.ndarray) -> bytes:
    return dicom_bytes(65535 - _scaled(pixels, 16), "MONOCHROME1", 16, _full_window(16))


def _encoded(img: Image.Image, fmt: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png16(_: bytes, pixels: np.ndarray) -> bytes:
    return _encoded(Image.fromarray(_scaled(pixels, 16)), "PNG")


def _down_1024(_: bytes, pixels: np.ndarray) -> bytes:
    img = Image.fromarray(pixels)
    scale = 1024 / max(img.size)
    if scale < 1:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    return _encoded(img, "JPEG", quality=95)


def _jpeg_60(_: bytes, pixels: np.ndarray) -> bytes:
    return _encoded(Image.fromarray(pixels), "JPEG", quality=60)


RENDERINGS: dict[str, Rendering] = {
    "original": Rendering("the original file, as it is", lambda data, _: data),
    "dicom_m2_12": Rendering(
        "DICOM, MONOCHROME2, 12 bits stored, window over the full range", _dicom_m2_12
    ),
    "dicom_m1_16": Rendering(
        "DICOM, MONOCHROME1 (inverted), 16 bits, window over the full range", _dicom_m1_16
    ),
    "png16": Rendering("16-bit grayscale PNG", _png16),
    "down_1024": Rendering(
        "long side downscaled to 1024 px (Lanczos), JPEG quality 95", _down_1024
    ),
    "jpeg_60": Rendering("recompressed as JPEG at quality 60, full size", _jpeg_60),
}


def chosen(names: Sequence[str] | None) -> tuple[str, ...]:
    """The renderings asked for (None or empty: all of them); an unknown name raises
    `DataError` naming the choices."""
    unknown = [n for n in names or () if n not in RENDERINGS]
    if unknown:
        raise DataError(f"unknown rendering {unknown[0]!r}; choose from {', '.join(RENDERINGS)}")
    return tuple(names or RENDERINGS)


def render(name: str, data: bytes, pixels: np.ndarray) -> bytes:
    """The file bytes of rendering `name` of an original (its bytes and decoded 8-bit pixels)."""
    if name not in RENDERINGS:
        raise ValueError(f"unknown rendering {name!r}; choose from {', '.join(RENDERINGS)}")
    return RENDERINGS[name].make(data, pixels)
