"""The door's allowlist of formats and its size budgets, checked before anything is decoded."""

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumonia.core.errors import ImageError, ImageTooLargeError, UnsupportedFormatError
from pneumonia.data.formats import ALLOWED, Budget, decoded_bytes, sniff
from pneumonia.data.image_io import decode_image, read_image
from pneumonia.data.synthetic import deflated_dicom, oversized_png, synthetic_xray


@pytest.fixture
def gray() -> np.ndarray:
    return synthetic_xray("NORMAL", 40, 48, np.random.default_rng(0))


def encoded(gray: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "BMP"])
def test_allowed_formats_are_recognised_by_their_bytes_whatever_the_name(
    gray: np.ndarray, fmt: str
) -> None:
    data = encoded(gray, fmt)
    assert sniff(data, "named-wrongly.gif") == fmt
    assert decode_image(data, "named-wrongly.gif").format == fmt


@pytest.mark.parametrize(
    ("fmt", "looks"),
    [("GIF", "GIF"), ("WEBP", "WebP"), ("ICO", "ICO"), ("PDF", "PDF")],
)
def test_other_formats_are_refused_naming_the_allowed_ones(
    gray: np.ndarray, fmt: str, looks: str
) -> None:
    data = encoded(gray.repeat(4, 0).repeat(4, 1), fmt)
    with pytest.raises(UnsupportedFormatError) as info:
        decode_image(data, f"x.{fmt.lower()}")
    assert f"a {looks} file" in info.value.reason
    assert all(name in info.value.reason for name in ALLOWED)


def test_eps_never_reaches_a_decoder() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(UnsupportedFormatError) as info:
        decode_image(eps, "x.png")
    assert "PostScript/EPS" in info.value.reason and "Ghostscript" not in str(info.value)


def test_a_multi_page_tiff_is_refused(gray: np.ndarray, tmp_path: Path) -> None:
    pages = [Image.fromarray(gray), Image.fromarray(255 - gray)]
    pages[0].save(tmp_path / "two.tiff", save_all=True, append_images=pages[1:])
    with pytest.raises(ImageError, match="2-page TIFF"):
        read_image(tmp_path / "two.tiff")


def test_decoded_bytes_are_judged_from_the_header() -> None:
    assert decoded_bytes("RGBA", 7070, 7070) == 7070 * 7070 * 4
    assert decoded_bytes("I;16", 10, 10) == 200
    bomb = oversized_png(7070, color_type=6)  # RGBA, a few hundred bytes
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="bytes decoded"):
        decode_image(bomb, "bomb.png", Budget(60_000_000, 64 << 20))
    with pytest.raises(ImageTooLargeError, match="pixels, over the 25,000,000 limit"):
        decode_image(bomb, "bomb.png", Budget(25_000_000))
    assert time.perf_counter() - started < 1  # refused, not decoded


def test_a_deflated_dicom_bomb_is_refused_before_it_inflates() -> None:
    bomb = deflated_dicom(4096)  # 32 MiB of pixels once inflated
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError, match="inflates to over"):
        decode_image(bomb, "bomb.dcm", Budget(max_bytes=4 << 20))
    small = deflated_dicom(64)
    assert decode_image(small, "small.dcm", Budget(max_bytes=4 << 20)).pixels.shape == (64, 64)


def test_a_huge_dicom_is_refused_from_its_header() -> None:
    from pydicom import dcmread

    from pneumonia.data.renderings import dicom_bytes

    ds = dcmread(io.BytesIO(dicom_bytes(np.zeros((4, 4), np.uint16), "MONOCHROME2", 16)))
    ds.Rows = ds.Columns = 7000  # 98 MB of 16-bit pixels claimed; 32 bytes sent
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(ImageTooLargeError, match="7000x7000"):
        decode_image(out.getvalue(), "big.dcm", Budget(25_000_000))
    with pytest.raises(ImageTooLargeError, match="bytes decoded"):
        decode_image(out.getvalue(), "big.dcm", Budget(60_000_000, 64 << 20))
