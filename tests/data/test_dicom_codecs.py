"""Every transfer syntax an archive holds for CR and DX, through the one door: files encoded in
the test (by pydicom's encoders, or by DCMTK where it is installed), decoded pixels checked
against the uncompressed source."""

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from pneumonia.core.errors import ImageError
from pneumonia.data.dicom_codecs import SUPPORTED, decode_pixels, syntax_name
from pneumonia.data.image_io import read_image
from pneumonia.data.renderings import dicom_bytes

DCMTK = shutil.which("dcmcjpeg") is not None
needs_dcmtk = pytest.mark.skipif(
    not DCMTK, reason="DCMTK is not installed (apt-get install dcmtk; .ci/run installs it)"
)


def film(h: int = 48, w: int = 64, bits: int = 12, seed: int = 0) -> np.ndarray:
    """A 12-bit grayscale image with structure and noise (compressors keep neither free)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    top = 2**bits - 1
    base = top * (0.2 + 0.6 * np.exp(-((x - w / 2) ** 2 + (y - h / 2) ** 2) / (0.1 * w * w)))
    return np.clip(base + rng.normal(0, 40, (h, w)), 0, top).astype(np.uint16)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pixels = film()
    path = tmp_path / "source.dcm"
    path.write_bytes(dicom_bytes(pixels, "MONOCHROME2", 12, (2048.0, 4096.0)))
    return path, pixels


def stored(path: Path) -> np.ndarray:
    ds = dcmread(path)
    return decode_pixels(ds).astype(int)


def compressed(src: Path, dst: Path, uid: str, **options: object) -> Path:
    ds = dcmread(src)
    ds.compress(uid, **options)
    ds.save_as(dst, enforce_file_format=True)
    return dst


@pytest.mark.parametrize(
    ("uid", "options", "tolerance"),
    [
        (RLELossless, {}, 0),
        (JPEGLSLossless, {}, 0),
        (JPEGLSNearLossless, {"jls_error": 3}, 3),
        (JPEG2000Lossless, {}, 0),
        (JPEG2000, {"j2k_cr": [10]}, 300),
    ],
    ids=["rle", "jpeg-ls", "jpeg-ls-near-lossless", "jpeg2000-lossless", "jpeg2000-lossy"],
)
def test_pydicom_encoded_syntaxes_decode_to_the_source(
    source: tuple[Path, np.ndarray], tmp_path: Path, uid: str, options: dict, tolerance: int
) -> None:
    path, pixels = source
    out = compressed(path, tmp_path / "c.dcm", uid, **options)
    assert str(dcmread(out).file_meta.TransferSyntaxUID) == uid
    difference = np.abs(stored(out) - pixels.astype(int))
    assert difference.max() <= tolerance
    if tolerance == 0:  # lossless: the door's 8-bit answer is the uncompressed file's
        assert np.array_equal(read_image(out)[1].pixels, read_image(path)[1].pixels)
    else:
        assert difference.max() > 0  # lossy really was lossy: the bound is what was tested


def dcmtk(tool: str, *args: str) -> None:
    done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@needs_dcmtk
@pytest.mark.parametrize(
    ("tool", "args", "uid", "tolerance"),
    [
        ("dcmcjpeg", ["+e1"], "1.2.840.10008.1.2.4.70", 0),  # lossless SV1, as archives hold CR
        ("dcmcjpeg", ["+el", "+sv", "6"], "1.2.840.10008.1.2.4.57", 0),  # another predictor
        ("dcmcjpls", ["+el"], "1.2.840.10008.1.2.4.80", 0),
        ("dcmcjpls", ["+en", "+md", "2"], "1.2.840.10008.1.2.4.81", 2),
        ("dcmcrle", [], "1.2.840.10008.1.2.5", 0),
        ("dcmconv", ["+tb"], "1.2.840.10008.1.2.2", 0),  # big endian
        ("dcmconv", ["+td"], "1.2.840.10008.1.2.1.99", 0),  # deflate
    ],
    ids=[
        "jpeg-lossless-sv1",
        "jpeg-lossless-sv6",
        "jpeg-ls",
        "jpeg-ls-near",
        "rle",
        "big-endian",
        "deflate",
    ],
)
def test_dcmtk_encoded_syntaxes_decode_to_the_source(
    source: tuple[Path, np.ndarray],
    tmp_path: Path,
    tool: str,
    args: list[str],
    uid: str,
    tolerance: int,
) -> None:
    path, pixels = source
    out = tmp_path / "c.dcm"
    dcmtk(tool, *args, str(path), str(out))
    assert str(dcmread(out).file_meta.TransferSyntaxUID) == uid
    assert np.abs(stored(out) - pixels.astype(int)).max() <= tolerance
    if tolerance == 0:
        assert np.array_equal(read_image(out)[1].pixels, read_image(path)[1].pixels)


@needs_dcmtk
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_jpeg_extended_12_bit_decodes_as_dcmtk_decodes_it(tmp_path: Path, photometric: str) -> None:
    pixels = film(seed=1)
    path = tmp_path / "source.dcm"
    path.write_bytes(dicom_bytes(pixels, photometric, 12))
    lossy, reference = tmp_path / "x.dcm", tmp_path / "x-dcmtk.dcm"
    dcmtk("dcmcjpeg", "+ee", str(path), str(lossy))  # JPEG Extended, 12-bit samples
    dcmtk("dcmdjpeg", str(lossy), str(reference))  # DCMTK's own decoder, as the reference
    assert str(dcmread(lossy).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.51"
    assert np.array_equal(stored(lossy), dcmread(reference).pixel_array.astype(int))
    # dcmcjpeg's lossy modes stretch the pixel range (its +sp default): lossy, but linear
    assert np.corrcoef(stored(lossy).ravel(), pixels.ravel())[0, 1] > 0.999
    assert np.array_equal(read_image(lossy)[1].pixels, read_image(reference)[1].pixels)


@needs_dcmtk
def test_jpeg_baseline_in_dicom_reads_as_the_same_jpeg_file(tmp_path: Path) -> None:
    pixels = (film(bits=8, seed=2)).astype(np.uint16)
    path = tmp_path / "source.dcm"
    path.write_bytes(dicom_bytes(pixels, "MONOCHROME2", 8))
    out = tmp_path / "jpeg.dcm"
    dcmtk("dcmcjpeg", "+eb", str(path), str(out))
    ds = dcmread(out)
    jpeg = tmp_path / "same.jpeg"  # the same JPEG stream as a plain file
    from pydicom.encaps import generate_frames

    jpeg.write_bytes(next(generate_frames(ds.PixelData, number_of_frames=1)))
    assert np.array_equal(stored(out), read_image(jpeg)[1].pixels.astype(int))


def test_an_unsupported_syntax_is_refused_by_name(source: tuple[Path, np.ndarray]) -> None:
    path, _ = source
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    target = path.with_name("video.dcm")
    target.write_bytes(buffer.getvalue())
    with pytest.raises(ImageError) as info:
        read_image(target)
    assert "1.2.840.10008.1.2.4.100" in str(info.value) and "not supported" in str(info.value)
    assert "MPEG2" in str(info.value) and str(target) in str(info.value)


def test_a_broken_compressed_stream_names_its_syntax(
    source: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, _ = source
    ds = dcmread(compressed(path, tmp_path / "c.dcm", JPEGLSLossless))
    from pydicom.encaps import generate_frames

    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 3]])  # cut short, as a failed copy is
    ds.save_as(tmp_path / "cut.dcm", enforce_file_format=True)
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / "cut.dcm")
    message = str(info.value)
    assert "cannot decode DICOM pixels" in message and "JPEG-LS Lossless" in message


def test_every_supported_syntax_has_a_name_and_an_installed_decoder() -> None:
    from pydicom.pixels import get_decoder

    from pneumonia.data.dicom_codecs import register

    register()
    for uid, plugins in SUPPORTED.items():
        assert syntax_name(uid) != uid  # pydicom knows it by name
        decoder = get_decoder(uid)
        assert any(p == "" or p in decoder.available_plugins for p in plugins), uid
