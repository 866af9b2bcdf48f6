"""Fuzzing the input door: mutated JPEG, PNG and DICOM bytes either decode to a 2-D uint8
image or raise `ImageError` naming the file; nothing else escapes (issue 14, faults)."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pneumonia.core.errors import ImageError
from pneumonia.data.formats import Budget
from pneumonia.data.image_io import decode_image
from pneumonia.data.synthetic import save_dicom, synthetic_xray

GRAY = synthetic_xray("PNEUMONIA", 40, 48, np.random.default_rng(0))


def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(GRAY).save(buffer, format=fmt)
    return buffer.getvalue()


def dicom_bytes(tmp: Path) -> bytes:
    return save_dicom(GRAY.astype(np.uint16) * 16, tmp / "x.dcm").read_bytes()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("fuzz")
    return {"x.jpeg": encoded("JPEG"), "x.png": encoded("PNG"), "x.dcm": dicom_bytes(tmp)}


mutation = st.tuples(
    st.sampled_from(["x.jpeg", "x.png", "x.dcm"]),
    st.lists(  # byte changes, half of them in the headers (the first 200 bytes)
        st.tuples(st.one_of(st.integers(0, 199), st.integers(0, 10**6)), st.integers(0, 255)),
        max_size=8,
    ),
    st.integers(0, 10**6),  # where to truncate (beyond the end: not truncated)
    st.binary(max_size=16),  # bytes appended
)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on mangled headers
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    derandomize=True,  # the same cases on every run; FUZZ_EXAMPLES=5000 for a longer hunt
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mutation)
def test_mutated_bytes_decode_or_raise_image_error(seeds: dict[str, bytes], case: tuple) -> None:
    name, flips, cut, tail = case
    data = bytearray(seeds[name])
    for position, value in flips:
        data[position % len(data)] = value
    data = data[: max(1, cut)] + tail if cut < len(data) else data + tail
    try:
        image = decode_image(bytes(data), name, Budget(10_000_000))
    except ImageError as exc:
        assert name in str(exc) and exc.reason
    else:
        assert image.pixels.ndim == 2 and image.pixels.dtype == np.uint8 and image.pixels.size
