"""The one image-loading door: every image read by this package comes through here.

`read_image(path)` returns the file's content hash and a 2-D uint8 grayscale array, or raises
`ImageError` naming the file and the problem. Pillow's decompression-bomb guard stays on (a
warning-sized image is refused too). Images stored inside a MedMNIST `.npz` are addressed as
`file.npz#split/index`.

Only JPEG, PNG, DICOM, TIFF and BMP are opened, recognised by their first bytes
(`pneumonia.data.formats`), and each decoder is handed only its own format; sizes are checked
from the header before any pixel is decoded. DICOM goes through `pneumonia.data.dicom`. 16-bit
PNG and TIFF are scaled by their bit depth, so an 8-bit image exported as 16 bits reads back as
itself; multi-page TIFF is refused.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pneumonia.core.errors import ImageError, ImageTooLargeError
from pneumonia.data.dicom import decode_dicom
from pneumonia.data.formats import Budget, DecodedImage, decoded_bytes, sniff
from pneumonia.data.levels import to_uint8_bits, to_uint8_range

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})
"""File suffixes treated as images when scanning folders (case-insensitive)."""

NPZ_SEP = "#"


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
    and integer images are scaled by their bit depth (`levels.to_uint8_bits`), float ones by their
    range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return to_uint8_bits(np.asarray(img))
    if img.mode == "F":
        return to_uint8_range(np.asarray(img))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


def decode_image(data: bytes, path: str | Path, budget: Budget | None = None) -> DecodedImage:
    """Decode image bytes to grayscale, raising `ImageError` with the reason on failure.

    The format is recognised by its first bytes (`formats.sniff`: JPEG, PNG, DICOM, TIFF, BMP;
    anything else raises `UnsupportedFormatError`). The `budget` (default: Pillow's
    decompression-bomb limit on pixels, none on bytes) is checked from the header, before any
    pixel is decoded; over it raises `ImageTooLargeError`.
    """
    if not data:
        raise ImageError(path, "file is empty (0 bytes)")
    fmt = sniff(data, path)
    if fmt == "DICOM":
        return decode_dicom(data, path, budget)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                mode, (width, height) = img.mode, img.size
                frames = int(getattr(img, "n_frames", 1) or 1)
                nbytes = decoded_bytes(mode, width, height)
                (budget or Budget()).check(path, width, height, nbytes)
                if frames > 1:
                    raise ImageError(path, f"{frames}-page {fmt}; export the frontal image alone")
                img.load()
                oriented = ImageOps.exif_transpose(img)
                pixels = _to_uint8_gray(oriented)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = f"refused as a possible decompression bomb ({exc})"
        raise ImageTooLargeError(path, reason) from None
    except UnidentifiedImageError:
        raise ImageError(path, f"not a readable {fmt} file (its header is damaged)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the file", str(exc)) or type(exc).__name__
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
