"""DICOM through the input door: made with pydicom in the test, never leaking patient data."""

import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import TinyRun
from pneumonia.core.errors import ImageError
from pneumonia.data.image_io import read_image
from pneumonia.data.synthetic import save_dicom
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import predict_paths


def ramp(h: int = 32, w: int = 48, top: int = 4095) -> np.ndarray:
    """A left-to-right 12-bit ramp: dark on the left, bright on the right."""
    return np.tile(np.linspace(0, top, w), (h, 1)).astype(np.uint16)


def test_monochrome2_twelve_bit_spans_eight_bits(tmp_path: Path) -> None:
    _, img = read_image(save_dicom(ramp(), tmp_path / "a.dcm"))
    assert img.format == "DICOM" and img.pixels.dtype == np.uint8
    assert img.pixels.shape == (32, 48) and (img.width, img.height) == (48, 32)
    assert img.pixels[:, 0].max() == 0 and img.pixels[:, -1].min() == 255
    assert (np.diff(img.pixels[0].astype(int)) >= 0).all()


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    _, m2 = read_image(save_dicom(ramp(), tmp_path / "m2.dcm"))
    _, m1 = read_image(save_dicom(ramp(), tmp_path / "m1.dcm", photometric="MONOCHROME1"))
    assert np.array_equal(m1.pixels, 255 - m2.pixels)


def test_window_from_the_header_is_applied(tmp_path: Path) -> None:
    # window 1000-2000 of a 0-4095 ramp: everything right of 2000 saturates white
    path = save_dicom(ramp(), tmp_path / "w.dcm", window=(1500.0, 1000.0))
    _, img = read_image(path)
    values = np.linspace(0, 4095, 48)
    assert (img.pixels[0, values >= 2001] == 255).all()
    assert (img.pixels[0, values <= 999] == 0).all()
    inside = img.pixels[0, (values > 1100) & (values < 1900)]
    assert inside.min() > 0 and inside.max() < 255


def test_without_the_preamble_marker_a_dcm_suffix_still_reads(tmp_path: Path) -> None:
    path = save_dicom(ramp(), tmp_path / "a.dcm")
    stripped = tmp_path / "b.dcm"
    stripped.write_bytes(path.read_bytes()[132:])  # no preamble, no DICM marker
    _, img = read_image(stripped)
    assert img.pixels.shape == (32, 48)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: save_dicom(np.stack([ramp(), ramp()]), p), "multi-frame DICOM (2 frames)"),
        (
            lambda p: save_dicom(np.zeros((8, 8, 3), np.uint8), p, photometric="RGB"),
            "colour DICOM (RGB)",
        ),
        (lambda p: save_dicom(ramp(), p, with_pixels=False), "no pixel data"),
        (lambda p: p.write_bytes(b"oops") and p, "not a DICOM file (no DICOM header"),
        (lambda p: p.write_text("notes\n" * 9) and p, "not a DICOM file (no DICOM header"),
    ],
    ids=["multi-frame", "colour", "no-pixels", "four-bytes", "text"],
)
def test_refused_dicom_names_the_problem_and_not_the_patient(
    tmp_path: Path, make: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = make(tmp_path / "x.dcm")  # type: ignore[operator]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert reason in message and str(path) in message
    for secret in ("Doe", "Jane", "SECRET-ID-4711", "20200101"):
        assert secret not in message and secret not in caplog.text


def test_dicom_predicts_through_the_same_door(
    tiny_run: TinyRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bundle = load_bundle(tiny_run.bundle)
    good = save_dicom(ramp(), tmp_path / "good.dcm")
    bad = save_dicom(ramp(), tmp_path / "bad.dcm", with_pixels=False)
    rows = predict_paths(bundle, [str(good), str(bad)], workers=1, show=False)
    assert rows[0].probability is not None and 0 <= rows[0].probability <= 1
    assert rows[1].probability is None and "no pixel data" in (rows[1].error or "")
    assert "Doe" not in caplog.text and "SECRET" not in caplog.text
