"""Every shift of the suite does what its name says, deterministically."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia.data.shifts import CLEAN, SHIFTS, apply_shift, resolve


def _image(h: int = 60, w: int = 80) -> np.ndarray:
    """A gradient with a bright square: geometry and exposure changes are measurable."""
    _, x = np.mgrid[0:h, 0:w]
    img = (40 + 150 * x / w).astype(np.uint8)
    img[20:40, 30:50] = 230
    return img


def test_every_shift_keeps_the_input_contract_and_changes_the_image() -> None:
    img = _image(120, 160)
    for name in SHIFTS:
        out = apply_shift(name, img, seed=0, key="a.png")
        assert out.dtype == np.uint8 and out.ndim == 2, name
        assert out.shape != img.shape or not np.array_equal(out, img), name
    assert apply_shift(CLEAN, img) is img


def test_geometry_shifts_change_the_shape_as_named() -> None:
    img = _image(100, 100)
    wide = apply_shift("wide_1.5", img)
    assert wide.shape[1] / wide.shape[0] == pytest.approx(1.5, rel=0.03)
    tall = apply_shift("tall_1.2", img)
    assert tall.shape[0] / tall.shape[1] == pytest.approx(1.2, rel=0.03)
    assert apply_shift("crop_70", img).shape == (70, 70)
    zoomed = apply_shift("zoom_out_80", img)
    assert zoomed.shape == img.shape and zoomed[:10].max() == 0 and zoomed[50, 50] > 0
    rotated = apply_shift("rotate_+8", np.full((100, 100), 200, np.uint8))
    assert rotated[0, 0] == 0 and rotated[50, 50] == 200


def test_exposure_shifts_move_grey_levels_as_named() -> None:
    img = _image()
    mid = img == img[10, 40]
    assert apply_shift("gamma_0.6", img)[mid].mean() > img[mid].mean()
    assert apply_shift("gamma_1.6", img)[mid].mean() < img[mid].mean()
    assert apply_shift("contrast_0.6", img).std() < img.std()
    black = apply_shift("black_level_40", np.zeros((8, 8), np.uint8))
    assert (black == 40).all()
    assert (apply_shift("inverted", img) == 255 - img).all()
    assert not SHIFTS["inverted"].scored
    assert all(s.scored for n, s in SHIFTS.items() if n != "inverted")


def test_resolution_and_noise_shifts_lose_detail_or_add_noise() -> None:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (128, 128), dtype=np.uint8)
    detail = float(np.abs(np.diff(texture.astype(float), axis=1)).mean())
    for name in ("down_96", "down_64", "blur_0.7", "blur_1.5", "jpeg_10"):
        out = apply_shift(name, texture).astype(float)
        assert np.abs(np.diff(out, axis=1)).mean() < detail, name
    flat = np.full((64, 64), 128, np.uint8)
    assert 6 < apply_shift("noise_8", flat).std() < 10
    assert 13 < apply_shift("noise_16", flat).std() < 19
    assert np.array_equal(apply_shift("down_96", _image(60, 80)), _image(60, 80))  # small already
    marked = apply_shift("text_markers", np.zeros((200, 200), np.uint8), key="x")
    assert (marked > 128).sum() > 20 and marked[80:120, 80:120].max() == 0  # corners only


def test_random_shifts_are_seeded_by_seed_and_image() -> None:
    img = _image()
    for name in ("noise_8", "text_markers"):
        a = apply_shift(name, img, seed=1, key="a.png")
        assert np.array_equal(a, apply_shift(name, img, seed=1, key="a.png"))
        others = [apply_shift(name, img, seed=2, key="a.png"), apply_shift(name, img, 1, "b.png")]
        assert any(not np.array_equal(a, o) for o in others)


def test_unknown_names_and_bad_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown shift 'nope'"):
        apply_shift("nope", _image())
    with pytest.raises(ValueError, match="2-D uint8"):
        apply_shift("gamma_0.6", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown shift"):
        resolve(["wide_1.5", "bogus"])
    assert resolve(None) == list(SHIFTS) and resolve(["clean", "crop_70"]) == ["crop_70"]


def test_views_reach_the_network_through_the_contract(tmp_path: Path) -> None:
    from pneumonia.data.shifts import views_job
    from pneumonia.data.synthetic import save_image, synthetic_xray

    path = save_image(
        synthetic_xray("NORMAL", 96, 96, np.random.default_rng(3)), tmp_path / "a.png"
    )
    from pneumonia.core.preprocess import Preprocessing

    stretch = Preprocessing(image_size=48, resize="stretch")
    job = (str(path), ("wide_1.5", "crop_85"), 0, stretch)
    clean, wide, crop = views_job(job).astype(int)  # type: ignore[union-attr]
    assert np.abs(wide - clean).mean() < 4  # squashed back: the training geometry
    assert np.abs(crop - clean).mean() > 4  # a square view is left as it is
    padded = views_job((*job[:3], stretch.model_copy(update={"resize": "pad"})))
    assert not isinstance(padded, str) and padded[1][:6].max() == 0  # letterbox bands
