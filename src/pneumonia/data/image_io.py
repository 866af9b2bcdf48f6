"""The one image-loading door: every image read by this package comes through here.

`read_image(path)` returns the file's content hash and a 2-D uint8 grayscale array, or raises
`ImageError` naming the file and the problem. Pillow's decompression-bomb guard stays on (a
warning-sized image is refused too). Images stored inside a MedMNIST `.npz` are addressed as
`file.npz#split/index`.

DICOM (recognised by its `DICM` marker, whatever the file is called) goes through pydicom:
modality LUT, then the header's linear window mapped onto 0..255 as a display shows it (a VOI
LUT, a sigmoid window or none: the result's own range), MONOCHROME1 inverted so bone is
bright. 16-bit PNG and TIFF are scaled by their bit depth, so an 8-bit image exported as 16
bits reads back as itself. Multi-frame and colour DICOM are refused. Nothing from a DICOM
header other than the pixel description is ever logged, returned or put in an error.
"""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pneumonia.core.errors import ImageError, ImageTooLargeError

IMAGE_SUFFIXES = frozenset(
    {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom"}
)
"""File suffixes treated as images when scanning folders (case-insensitive)."""

NPZ_SEP = "#"


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: grayscale pixels plus what the file was before conversion."""

    pixels: np.ndarray  # 2-D uint8
    width: int
    height: int
    mode: str
    format: str


def npz_ref(npz_path: str | Path, split: str, index: int) -> str:
    """Address of one image inside a MedMNIST npz file."""
    return f"{npz_path}{NPZ_SEP}{split}/{index}"


def split_npz_ref(ref: str) -> tuple[str, str, int] | None:
    """`a.npz#train/3` -> (`a.npz`, `train`, 3); None when `ref` is a plain path."""
    head, sep, tail = ref.rpartition(NPZ_SEP)
    if not sep or not head.lower().endswith(".npz") or "/" not in tail:
        return None
    split, _, index = tail.partition("/")
    if not index.isdigit():
        return None
    return head, split, int(index)


@functools.lru_cache(maxsize=2)
def _npz_arrays(path: str, mtime_ns: int) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def npz_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file, cached while the file is unchanged."""
    p = Path(path)
    return _npz_arrays(str(p), p.stat().st_mtime_ns)


def _to_uint8_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> 2-D uint8 luminance; transparency composited onto black. 16-bit
    and integer images are scaled by their bit depth (`_to_uint8_bits`), float ones by their
    range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return _to_uint8_bits(np.asarray(img))
    if img.mode == "F":
        return _to_uint8_range(np.asarray(img))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


def is_dicom(data: bytes, path: str | Path) -> bool:
    """A DICOM Part 10 file (`DICM` after the preamble), or a `.dcm` file without one."""
    return data[128:132] == b"DICM" or Path(path).suffix.lower() in (".dcm", ".dicom")


def _to_uint8_bits(arr: np.ndarray) -> np.ndarray:
    """Integer grey levels -> 8 bits by their bit depth: the fewest of 8 to 32 bits that hold the
    largest value. An 8-bit image saved as 16 bits (x 257) reads back as itself, a 12-bit image
    in a 16-bit file keeps its brightness; negative values: by the range instead."""
    arr = np.asarray(arr)
    if arr.size == 0 or int(arr.min()) < 0:
        return _to_uint8_range(arr)
    bits = max(8, int(arr.max()).bit_length())
    return np.round(arr.astype(np.float64) * (255.0 / (2**bits - 1))).astype(np.uint8)


def _to_uint8_range(arr: np.ndarray) -> np.ndarray:
    """Grey levels -> 8 bits by their own range (darkest 0, brightest 255)."""
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("pixel values that are not finite numbers (NaN or infinity)")
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _dicom_dataset(data: bytes, path: str | Path) -> Any:
    from pydicom import dcmread

    try:
        return dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageError(path, f"not a readable DICOM file ({type(exc).__name__})") from None


def check_pixels(path: str | Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image whose decoded size would exceed `max_pixels` (before decoding it)."""
    limit = max_pixels or Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise ImageTooLargeError(
            path, f"image is {width}x{height} = {width * height:,} pixels, over the {limit:,} limit"
        )


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
    scaled = (np.asarray(arr, dtype=np.float64) - (center - width / 2)) * (255.0 / width)
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def decode_dicom(data: bytes, path: str | Path, max_pixels: int | None = None) -> DecodedImage:
    """A single-frame grayscale DICOM -> 8-bit pixels, windowed as its header says."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = _dicom_dataset(data, path)
    if "PixelData" not in ds:
        raise ImageError(path, "DICOM file has no pixel data (a report or structured document?)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(path, f"multi-frame DICOM ({frames} frames); export the frontal image")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(path, f"colour DICOM ({photometric or 'unknown'}); X-rays are grayscale")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    check_pixels(path, cols, rows, max_pixels)
    try:
        arr = apply_modality_lut(ds.pixel_array, ds)
        pixels = _linear_window(arr, ds)
        if pixels is None:
            pixels = _to_uint8_range(apply_voi_lut(arr, ds))
    except Exception as exc:
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None) if "file_meta" in ds else None
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise ImageError(path, f"cannot decode DICOM pixels ({name}: {exc})") from None
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageError(path, f"DICOM pixel data has shape {pixels.shape}, not one 2-D image")
    bits = int(ds.get("BitsStored", 8))
    return DecodedImage(pixels, cols, rows, f"{photometric} {bits}-bit", "DICOM")


def decode_image(data: bytes, path: str | Path, max_pixels: int | None = None) -> DecodedImage:
    """Decode image bytes to grayscale, raising `ImageError` with the reason on failure.

    `max_pixels` (default: Pillow's decompression-bomb limit) is checked from the header,
    before any pixel is decoded; over it raises `ImageTooLargeError`.
    """
    if not data:
        raise ImageError(path, "file is empty (0 bytes)")
    if is_dicom(data, path):
        return decode_dicom(data, path, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, mode, (width, height) = img.format or "?", img.mode, img.size
                check_pixels(path, width, height, max_pixels)
                img.load()
                oriented = ImageOps.exif_transpose(img)
                pixels = _to_uint8_gray(oriented)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = f"refused as a possible decompression bomb ({exc})"
        raise ImageTooLargeError(path, reason) from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file Pillow can read (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = f"truncated image ({reason})"
        raise ImageError(path, f"cannot decode image: {reason}") from None
    if pixels.size == 0:
        raise ImageError(path, "image has no pixels")
    return DecodedImage(pixels, width, height, mode, fmt)


def _read_npz_image(ref: str, npz: str, split: str, index: int) -> tuple[str, DecodedImage]:
    try:
        arrays = npz_arrays(npz)
    except (OSError, ValueError) as exc:
        raise ImageError(npz, f"cannot read npz file ({exc})") from None
    key = f"{split}_images"
    if key not in arrays or index >= len(arrays[key]):
        raise ImageError(ref, f"no image {index} under key {key!r}")
    arr = np.asarray(arrays[key][index])
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = np.asarray(Image.fromarray(arr[..., :3].astype(np.uint8)).convert("L"))
    if arr.ndim != 2:
        raise ImageError(ref, f"expected a 2-D image, got shape {arr.shape}")
    pixels = arr.astype(np.uint8)
    digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()
    h, w = pixels.shape
    return digest, DecodedImage(pixels, w, h, "L", "NPZ")


def read_image(path: str | Path) -> tuple[str, DecodedImage]:
    """Read one image: (sha256 of its content, decoded grayscale image).

    Raises `ImageError` naming the file when it is missing, unreadable or not an image.
    """
    ref = split_npz_ref(str(path))
    if ref is not None:
        return _read_npz_image(str(path), *ref)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image file") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from None
    return hashlib.sha256(data).hexdigest(), decode_image(data, path)


def load_gray(path: str | Path) -> np.ndarray:
    """The door for callers that only need pixels: 2-D uint8 grayscale array."""
    return read_image(path)[1].pixels
