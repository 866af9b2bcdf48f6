"""Renderings of an original: each reads back through the input door as the same picture."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia.data.image_io import decode_image
from pneumonia.data.renderings import RENDERINGS, render
from pneumonia.data.synthetic import save_image, synthetic_xray


@pytest.fixture
def original(tmp_path: Path) -> tuple[bytes, np.ndarray]:
    """A wide synthetic X-ray whose brightest pixel is 200 (not the full 8-bit range)."""
    gray = synthetic_xray("PNEUMONIA", 300, 420, np.random.default_rng(1))
    gray = np.round(gray * (200 / gray.max())).astype(np.uint8)
    path = save_image(gray, tmp_path / "a.png")
    return path.read_bytes(), gray


@pytest.mark.parametrize("name", ["original", "dicom_m2_12", "dicom_m1_16", "png16"])
def test_lossless_renderings_read_back_pixel_for_pixel(
    original: tuple[bytes, np.ndarray], name: str
) -> None:
    data, gray = original
    decoded = decode_image(render(name, data, gray), name)
    assert np.array_equal(decoded.pixels, gray)


def test_dicom_renderings_say_what_they_are(original: tuple[bytes, np.ndarray]) -> None:
    data, gray = original
    assert decode_image(render("dicom_m2_12", data, gray), "a").mode == "MONOCHROME2 12-bit"
    assert decode_image(render("dicom_m1_16", data, gray), "b").mode == "MONOCHROME1 16-bit"


def test_lossy_renderings_stay_close(original: tuple[bytes, np.ndarray]) -> None:
    data, gray = original
    decoded = decode_image(render("jpeg_60", data, gray), "j")
    error = np.abs(decoded.pixels.astype(int) - gray).mean()
    assert decoded.format == "JPEG" and decoded.pixels.shape == gray.shape and 0 < error < 8


def test_downscale_caps_the_long_side_at_1024() -> None:
    big = synthetic_xray("NORMAL", 1100, 1500, np.random.default_rng(2))
    small = decode_image(render("down_1024", b"", big), "d")
    assert (small.width, small.height) == (1024, round(1100 * 1024 / 1500))
    little = synthetic_xray("NORMAL", 60, 80, np.random.default_rng(3))
    assert decode_image(render("down_1024", b"", little), "e").pixels.shape == (60, 80)


def test_every_rendering_is_described_and_an_unknown_one_is_refused() -> None:
    assert all(r.description for r in RENDERINGS.values())
    with pytest.raises(ValueError, match="unknown rendering 'tiff9'"):
        render("tiff9", b"", np.zeros((4, 4), np.uint8))
