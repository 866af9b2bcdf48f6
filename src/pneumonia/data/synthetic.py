"""Synthetic chest-X-ray-like images and datasets, for tests and the demo. Not real data.

An image has a bright torso on black, two dark lung fields crossed by bright ribs, a spine
and a heart shadow; PNEUMONIA adds patchy bright opacities inside the lungs. Datasets are
written in every layout `discover` reads, with Kaggle-style file names carrying patient ids.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from pneumonia.core import LABELS
from pneumonia.data.discover import subtype_of
from pneumonia.data.renderings import dicom_bytes

Layout = Literal["kaggle", "kaggle_nested", "tolgadincer", "medmnist", "csv"]
LAYOUTS: tuple[Layout, ...] = ("kaggle", "kaggle_nested", "tolgadincer", "medmnist", "csv")


def _ellipse(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float
) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


# opacities per subtype: (how many, radius range, strength), as the two look on film: a few
# large dense ones (focal lobar consolidation) against many small faint ones (a diffuse
# interstitial pattern); None: the mixed opacities of images drawn without a subtype
_OPACITIES = {
    None: ((3, 7), (0.05, 0.1), 0.45),
    "bacterial": ((1, 3), (0.1, 0.14), 0.6),
    "viral": ((10, 16), (0.025, 0.04), 0.35),
}


def synthetic_xray(
    label: str,
    height: int = 64,
    width: int = 64,
    rng: np.random.Generator | None = None,
    subtype: str | None = None,
) -> np.ndarray:
    """One synthetic frontal chest X-ray as a 2-D uint8 array; PNEUMONIA has opacities, of
    the `subtype`'s kind (bacterial: few, large, dense; viral: many, small, faint)."""
    if height < 8 or width < 8:
        raise ValueError(f"image must be at least 8x8 pixels, got {height}x{width}")
    rng = rng or np.random.default_rng()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height, xx / width
    img = np.zeros((height, width), np.float32)
    img[_ellipse(yy, xx, 0.55, 0.5, 0.55, 0.45 + rng.uniform(-0.03, 0.03))] = 0.65
    lungs = np.zeros_like(img, dtype=bool)
    for side in (-1, 1):
        cx = 0.5 + side * rng.uniform(0.17, 0.21)
        lungs |= _ellipse(yy, xx, 0.48 + rng.uniform(-0.03, 0.03), cx, 0.3, 0.13)
    img[lungs] = 0.22
    ribs = np.abs(np.sin((yy + 0.15 * ((xx - 0.5) * 2) ** 2) * np.pi * rng.uniform(9, 11))) > 0.93
    img[ribs & lungs] += 0.18
    img[np.abs(xx - 0.5) < 0.04] = 0.8
    img[_ellipse(yy, xx, 0.62, 0.56, 0.14, 0.12)] = 0.75
    if label == "PNEUMONIA":
        ys, xs = np.nonzero(lungs)
        count, radius, strength = _OPACITIES[subtype]
        for _ in range(int(rng.integers(*count))):
            k = rng.integers(len(ys))
            cy, cx, r = ys[k] / height, xs[k] / width, rng.uniform(*radius)
            blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
            img += strength * blob * lungs
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def save_image(gray: np.ndarray, path: Path, mode: str = "L") -> Path:
    """Save a uint8 grayscale array as `mode` (L, RGB, RGBA, P, I;16) in the suffix's format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    elif mode == "P":
        Image.fromarray(gray).convert("P").save(path)
    else:
        Image.fromarray(gray).convert(mode).save(path)
    return path


def _file_name(label: str, patient: int, k: int) -> str:
    if label == "PNEUMONIA":
        kind = "bacteria" if patient % 2 else "virus"
        return f"person{patient}_{kind}_{k}.jpeg"
    prefix = "NORMAL2-IM" if patient % 3 == 0 else "IM"
    return f"{prefix}-{patient:04d}-{k + 1:04d}.jpeg"


def _plan(counts: dict[str, int], images_per_patient: int) -> list[tuple[str, int, int]]:
    """(label, patient number, image number) for every image, several images per patient."""
    plan = []
    for label in LABELS:
        for i in range(counts[label]):
            plan.append((label, i // images_per_patient + 1, i % images_per_patient))
    return plan


def make_dataset(
    root: str | Path,
    layout: Layout = "kaggle",
    per_split: dict[str, dict[str, int]] | None = None,
    size_range: tuple[int, int] = (48, 96),
    modes: tuple[str, ...] = ("L",),
    images_per_patient: int = 2,
    seed: int = 0,
    subtypes: bool = False,
) -> Path:
    """Write a synthetic dataset under `root` in `layout`; returns the path to point tools at.
    PNEUMONIA file names always say bacteria or virus; with `subtypes` the images show it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    splits = ("train", "test") if layout == "tolgadincer" else ("train", "val", "test")
    per_split = per_split or {s: {"NORMAL": 6, "PNEUMONIA": 10} for s in splits}

    def image(label: str, subtype: str | None) -> tuple[np.ndarray, str]:
        h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        gray = synthetic_xray(label, h, w, rng, subtype if subtypes else None)
        return gray, modes[int(rng.integers(len(modes)))]

    if layout == "medmnist":
        side = size_range[0]
        arrays: dict[str, np.ndarray] = {}
        for split, counts in per_split.items():
            plan = _plan(counts, images_per_patient)
            arrays[f"{split}_images"] = (
                np.stack([synthetic_xray(lab, side, side, rng) for lab, _, _ in plan])
                if plan
                else np.zeros((0, side, side), np.uint8)
            )
            arrays[f"{split}_labels"] = np.array([[LABELS.index(lab)] for lab, _, _ in plan])
        root.mkdir(parents=True, exist_ok=True)
        np.savez(root / "pneumoniamnist.npz", **arrays)  # type: ignore[arg-type]
        return root / "pneumoniamnist.npz"

    base = root / "chest_xray"
    if layout == "kaggle_nested":
        base = root / "chest_xray" / "chest_xray"
        (root / "chest_xray" / "__MACOSX" / "chest_xray").mkdir(parents=True)
        (root / "chest_xray" / "__MACOSX" / "chest_xray" / "._IM-0001-0001.jpeg").write_bytes(b"\0")
    rows = []
    offset = 0
    for split, counts in per_split.items():
        for label, patient, k in _plan(counts, images_per_patient):
            name = _file_name(label, patient + offset, k)
            gray, mode = image(label, subtype_of(name, label))
            rel = Path(split) / label / name
            suffix = ".png" if mode in ("I;16", "RGBA", "P") else ".jpeg"
            save_image(gray, (base / rel).with_suffix(suffix), mode)
            rows.append(
                (str(rel.with_suffix(suffix)), label, f"p{label[0]}{patient + offset}", split)
            )
        offset += 1000
    if layout == "kaggle_nested":
        (base / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (base / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    if layout == "csv":
        with (base / "labels.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "patient", "split"])
            writer.writerows(rows)
        return base / "labels.csv"
    return root


def make_pairs(root: Path, n: int = 6, changed: str | None = None) -> tuple[Path, Path]:
    """`n` wide synthetic originals per label under `root/originals` and their copies under
    `root/copies`, the same files except the copy named `changed`, which is black (a pair
    with a known change), for `pneumonia pairs`."""
    originals, copies = root / "originals", root / "copies"
    rng = np.random.default_rng(0)
    for label in LABELS:
        for k in range(n):
            name = f"person{k}_bacteria_{k}.png" if label == "PNEUMONIA" else f"IM-{k:04d}-0001.png"
            gray = synthetic_xray(label, 48, 72, rng)
            save_image(gray, originals / label / name)
            save_image(np.zeros_like(gray) if name == changed else gray, copies / label / name)
    return originals, copies


def save_dicom(
    pixels: np.ndarray,
    path: Path,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    window: tuple[float, float] | None = None,
    with_pixels: bool = True,
) -> Path:
    """Write `pixels` (2-D, or frames x H x W, or H x W x 3 for RGB) as a DICOM file made
    with pydicom, with made-up patient details (for tests that they never leak)."""
    from pydicom import dcmread

    patient = {
        "PatientName": "Doe^Jane",
        "PatientID": "SECRET-ID-4711",
        "PatientBirthDate": "20200101",
    }
    data = dicom_bytes(pixels, photometric, bits_stored, window, patient)
    if not with_pixels:
        ds = dcmread(io.BytesIO(data))
        del ds.PixelData
        ds.save_as(path, enforce_file_format=True)
        return path
    path.write_bytes(data)
    return path


def deflated_dicom(side: int = 4096, bits: int = 16) -> bytes:
    """A DICOM file in the Deflated Explicit VR Little Endian transfer syntax whose `side` x
    `side` image of zeros inflates to side^2 * bits / 8 bytes from a few kilobytes: a small
    file that is a decompression bomb (4096: 32 MiB; 23170: 1 GiB)."""
    from pydicom import dcmread
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    header = dicom_bytes(np.zeros((2, 2), np.uint16), "MONOCHROME2", bits)
    ds = dcmread(io.BytesIO(header))
    ds.Rows = ds.Columns = side
    ds.PixelData = bytes(side * side * bits // 8)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def oversized_png(side: int = 30000, color_type: int = 0) -> bytes:
    """A valid PNG header claiming `side` x `side` pixels (grey, or RGBA with `color_type` 6)
    in a few hundred bytes: what a decompression bomb looks like to a decoder that trusts
    headers."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", side, side, 8, color_type, 0, 0, 0)
    one_row = zlib.compress(b"\x00" * (side + 1))
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", one_row) + chunk(b"IEND", b"")
