"""The cache: built once, reused when unchanged, rebuilt for new settings, bad files excluded."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pneumonia.core.preprocess import Preprocessing
from pneumonia.data.cache import cached_array_path, prepare_cache, read_failed
from pneumonia.data.split import Row, make_manifest
from pneumonia.data.synthetic import make_dataset


@pytest.fixture
def rows(tmp_path: Path) -> list[Row]:
    per = {"train": {"NORMAL": 10, "PNEUMONIA": 10}}
    make_dataset(tmp_path / "d", "kaggle", per, size_range=(30, 60), modes=("L", "RGB", "I;16"))
    return make_manifest(tmp_path / "d", 0.2, 0, workers=1, show=False)[0]


def test_build_then_reuse_then_rebuild_on_new_setting(tmp_path: Path, rows: list[Row]) -> None:
    contract = Preprocessing(image_size=32)
    first = prepare_cache(rows, tmp_path / "c", contract, workers=1, show=False)
    assert (first.built, first.reused, first.failed) == (20, 0, [])
    arr = np.load(cached_array_path(first.cache_dir, rows[0].sha256))
    assert arr.shape == (32, 32) and arr.dtype == np.uint8
    again = prepare_cache(rows, tmp_path / "c", Preprocessing(image_size=32, mean=0.3), 1, False)
    assert (again.built, again.reused) == (0, 20)  # normalisation does not touch pixels
    cropped = prepare_cache(
        rows, tmp_path / "c", Preprocessing(image_size=32, resize="crop"), 1, False
    )
    assert (cropped.built, cropped.reused) == (20, 0)
    assert cropped.cache_dir != first.cache_dir


def test_cached_arrays_get_the_mode_of_any_other_file(tmp_path: Path, rows: list[Row]) -> None:
    old = os.umask(0o027)
    try:
        built = prepare_cache(rows[:3], tmp_path / "c", Preprocessing(image_size=32), 1, False)
    finally:
        os.umask(old)
    arrays = list(built.cache_dir.rglob("*.npy"))
    assert len(arrays) == 3  # written through a private temporary file, then opened up
    assert {stat.S_IMODE(p.stat().st_mode) for p in arrays} == {0o640}


def test_parallel_cache_equals_serial(tmp_path: Path, rows: list[Row]) -> None:
    many = rows * 4  # enough items for the process pool
    serial = prepare_cache(many, tmp_path / "a", Preprocessing(image_size=16), 1, False)
    parallel = prepare_cache(many, tmp_path / "b", Preprocessing(image_size=16), 2, False)
    assert serial.built == parallel.built == 20
    for r in rows:
        a = np.load(cached_array_path(serial.cache_dir, r.sha256))
        b = np.load(cached_array_path(parallel.cache_dir, r.sha256))
        assert np.array_equal(a, b)


def test_bad_image_is_listed_and_the_rest_cached(tmp_path: Path, rows: list[Row]) -> None:
    bad, changed = Path(rows[3].path), Path(rows[4].path)
    bad.write_bytes(bad.read_bytes()[:200])  # truncated after the manifest was made
    changed.write_bytes(Path(rows[5].path).read_bytes())  # replaced by another image
    text = tmp_path / "notes.jpeg"
    text.write_text("not an image")
    rows = [*rows, Row(str(text), "NORMAL", "x", "train", "0" * 64)]
    summary = prepare_cache(rows, tmp_path / "c", Preprocessing(image_size=16), 1, False)
    assert summary.built == 18
    reasons = {p.path: p.message for p in summary.failed}
    assert "truncated" in reasons[str(bad)]
    assert "content changed" in reasons[str(changed)]
    assert "not an image" in reasons[str(text)]
    assert read_failed(summary.cache_dir) == reasons
