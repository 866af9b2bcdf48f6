"""The input door: every Pillow mode to 2-D uint8, and one clear error per bad file."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumonia.core.errors import ImageError
from pneumonia.data.image_io import load_gray, npz_ref, read_image, split_npz_ref
from pneumonia.data.synthetic import synthetic_xray


@pytest.fixture
def gray() -> np.ndarray:
    return synthetic_xray("NORMAL", 40, 56, np.random.default_rng(0))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "I;16", "1", "LA"])
def test_every_mode_becomes_2d_uint8(tmp_path: Path, gray: np.ndarray, mode: str) -> None:
    path = tmp_path / ("x.tiff" if mode == "CMYK" else "x.png")
    if mode == "I;16":
        Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    else:
        Image.fromarray(gray).convert(mode).save(path)
    digest, img = read_image(path)
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (40, 56)
    assert (img.width, img.height) == (56, 40)
    assert len(digest) == 64
    if mode in ("L", "RGB", "LA"):
        assert np.abs(img.pixels.astype(int) - gray).max() <= 1


def test_sixteen_bit_is_scaled_by_its_bit_depth(tmp_path: Path, gray: np.ndarray) -> None:
    # an 8-bit image whose brightest pixel is 180, exported as 16 bits (x 257), reads back
    # as itself: not stretched to 255 as its own range would
    dim = np.round(gray * (180 / gray.max())).astype(np.uint8)
    Image.fromarray(dim.astype(np.uint16) * 257).save(tmp_path / "dim.png")
    assert np.array_equal(load_gray(tmp_path / "dim.png"), dim)
    # a 12-bit image in a 16-bit file is scaled by 4095, not stretched to its own range
    arr = np.linspace(1000, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    pixels = load_gray(tmp_path / "x.png")
    assert pixels.min() == round(1000 * 255 / 4095) and pixels.max() == round(4000 * 255 / 4095)


def test_float_pixels_that_are_not_numbers_are_refused(tmp_path: Path) -> None:
    arr = np.full((16, 16), np.nan, dtype=np.float32)
    Image.fromarray(arr).save(tmp_path / "nan.tiff")
    with pytest.raises(ImageError, match="not finite"):
        load_gray(tmp_path / "nan.tiff")


def test_alpha_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.full((8, 8, 4), 200, np.uint8)
    rgba[..., 3] = 255
    rgba[:, :4, 3] = 0  # left half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels = load_gray(tmp_path / "a.png")
    assert pixels[:, :4].max() == 0 and pixels[:, 4:].min() == 200


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40), np.uint8)
    arr[:, :5] = 255  # bright stripe on the left of a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise on display
    Image.fromarray(arr).save(tmp_path / "r.jpeg", exif=exif, quality=95)
    pixels = load_gray(tmp_path / "r.jpeg")
    assert pixels.shape == (40, 20)
    assert pixels[:5].mean() > 200  # the stripe is now on top


def _jpeg_bytes(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpeg", b"", "empty"),
        ("notes.jpeg", b"this is a text file, not an image\n", "not an image"),
        ("cut.jpeg", "TRUNCATED", "truncated"),
    ],
)
def test_bad_files_name_the_file_and_reason(
    tmp_path: Path, gray: np.ndarray, name: str, content: object, reason: str
) -> None:
    data = _jpeg_bytes(gray)[:300] if content == "TRUNCATED" else content
    path = tmp_path / name
    path.write_bytes(data)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match=reason) as info:
        read_image(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)


def test_decompression_bomb_guard_stays_on(
    tmp_path: Path, gray: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(gray).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40*56 = 2240 > limit
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(tmp_path / "big.png")


def test_npz_references(tmp_path: Path, gray: np.ndarray) -> None:
    np.savez(tmp_path / "p.npz", train_images=np.stack([gray, 255 - gray]), train_labels=[[0], [1]])
    ref = npz_ref(tmp_path / "p.npz", "train", 1)
    assert split_npz_ref(ref) == (str(tmp_path / "p.npz"), "train", 1)
    assert split_npz_ref(str(tmp_path / "a#b.png")) is None
    assert np.array_equal(load_gray(ref), 255 - gray)
    with pytest.raises(ImageError, match="no image 5"):
        read_image(npz_ref(tmp_path / "p.npz", "train", 5))
