import numpy as np
import pytest
import torch
from PIL import Image

from pneumonia.core.preprocess import Preprocessing, fit_to_square, square_stats
from pneumonia.modeling.network import to_tensor


def test_pad_keeps_the_whole_image_centred() -> None:
    wide = np.full((50, 100), 200, np.uint8)
    out = fit_to_square(wide, 64, "pad")
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert out[:15].max() == 0 and out[-15:].max() == 0  # letterbox bands top and bottom
    assert out[32].min() == 200  # the image spans the full width


def test_crop_fills_the_square() -> None:
    tall = np.full((120, 60), 90, np.uint8)
    tall[:20] = 0  # cut off by a centre crop
    out = fit_to_square(tall, 32, "crop")
    assert out.shape == (32, 32)
    assert out.min() == 90


@pytest.mark.parametrize("aspect", [1.15, 1.5, 1 / 1.2])
def test_stretch_maps_an_original_of_any_aspect_back_onto_the_square(aspect: float) -> None:
    # a square "copy" of 8x8 blocks and a synthetic "original" of it at a known aspect ratio
    rng = np.random.default_rng(0)
    copy = np.kron(rng.integers(1, 256, (8, 8)), np.ones((12, 12))).astype(np.uint8)  # 96 px
    original = np.asarray(Image.fromarray(copy).resize((round(96 * aspect), 96)))
    target = fit_to_square(copy, 48, "stretch")
    stretched = fit_to_square(original, 48, "stretch")
    padded = fit_to_square(original, 48, "pad")
    assert stretched.shape == (48, 48) and stretched.min() > 0  # no letterbox bands
    stretch_error = np.abs(stretched.astype(int) - target.astype(int)).mean()
    pad_error = np.abs(padded.astype(int) - target.astype(int)).mean()
    assert stretch_error < 6 and pad_error > 4 * stretch_error


def test_every_mode_gives_a_square_image_the_same_pixels() -> None:
    square = np.random.default_rng(1).integers(0, 256, (224, 224), dtype=np.uint8)
    modes = [fit_to_square(square, 192, mode) for mode in ("stretch", "pad", "crop")]
    assert all(np.array_equal(modes[0], other) for other in modes[1:])


def test_unknown_resize_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="stretch, pad, crop"):
        fit_to_square(np.zeros((4, 4), np.uint8), 8, "squash")


def test_fit_rejects_non_grayscale() -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        fit_to_square(np.zeros((4, 4, 3), np.uint8), 8)


def test_to_tensor_applies_the_recorded_normalisation() -> None:
    contract = Preprocessing(image_size=8, mean=0.5, std=0.25)
    x = to_tensor(np.array([[0, 255]], np.uint8), contract)
    assert x.shape == (1, 1, 2)
    assert torch.allclose(x, torch.tensor([[[-2.0, 2.0]]]))
    batch = to_tensor(np.zeros((3, 4, 4), np.uint8), contract)
    assert batch.shape == (3, 1, 4, 4)


def test_cache_key_follows_pixel_settings_only() -> None:
    base = Preprocessing()
    assert base.cache_key() == Preprocessing(mean=0.1).cache_key()
    assert base.cache_key() != Preprocessing(image_size=128).cache_key()
    assert base.cache_key() != Preprocessing(resize="crop").cache_key()
    assert base.describe()["size"] == [base.image_size, base.image_size]


def test_square_stats() -> None:
    squares = np.stack([np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)])
    squares[0, :2] = 255
    stats = square_stats(squares)
    np.testing.assert_allclose(stats["brightness"], [0.5, 1.0])
    np.testing.assert_allclose(stats["contrast"], [0.5, 0.0])


def test_render_makes_an_original_look_as_its_copy() -> None:
    from pneumonia.core.preprocess import Render, jpeg_round_trip
    from pneumonia.data.synthetic import synthetic_xray

    original = synthetic_xray("PNEUMONIA", 600, 840, np.random.default_rng(0))
    # the copy, made as the Kaggle copies were: squashed to 224 and saved as JPEG quality 75
    copy = jpeg_round_trip(fit_to_square(original, 224, "stretch"), 75)
    plain = Preprocessing(image_size=64, resize="stretch")
    rendered = plain.model_copy(update={"render": Render(side=224, quality=75)})
    gap_plain = np.abs(plain.square(original).astype(int) - plain.square(copy)).mean()
    gap_rendered = np.abs(rendered.square(original).astype(int) - rendered.square(copy)).mean()
    assert gap_rendered < gap_plain / 3  # the original now reaches the network as its copy
    assert rendered.square(original).shape == (64, 64)
    assert rendered.cache_key() != plain.cache_key()
    assert "JPEG quality 75" in str(rendered.describe()["render"])
    assert plain.describe()["render"] is None


def test_render_blur_evens_out_jpeg_noise_and_keeps_older_keys() -> None:
    from pneumonia.core.bundle import read_meta
    from pneumonia.core.preprocess import Render
    from pneumonia.data.synthetic import synthetic_xray

    original = synthetic_xray("PNEUMONIA", 600, 840, np.random.default_rng(1))
    sharp = Preprocessing(image_size=224, resize="stretch", render=Render())
    soft = sharp.model_copy(update={"render": Render(blur=1.0)})
    # the blur removes pixel-level detail (the JPEG noise lives there) and keeps the levels
    detail = [np.abs(np.diff(c.square(original).astype(int), axis=1)).mean() for c in (sharp, soft)]
    assert detail[1] < 0.8 * detail[0]
    assert abs(float(soft.square(original).mean()) - float(sharp.square(original).mean())) < 1
    # a render step without blur keeps the cache key and weights record it had before blur
    assert Render(blur=0).model_dump() == {"side": 224, "quality": 75}
    assert soft.cache_key() != sharp.cache_key()
    assert sharp.cache_key() == sharp.model_copy(update={"render": Render(blur=0.0)}).cache_key()
    assert "Gaussian blur sigma 1 px" in str(soft.describe()["render"])
    # weights recorded with a render step before blur existed still match their metadata
    _, meta = read_meta(None)
    sharp_meta = meta.model_copy(update={"preprocessing": sharp})
    assert '"render": {"quality": 75, "side": 224}' in sharp_meta.contract_record()
    soft_meta = meta.model_copy(update={"preprocessing": soft})
    assert '"render": {"blur": 1.0, "quality": 75, "side": 224}' in soft_meta.contract_record()
    with pytest.raises(ValueError):
        Render(blur=-1)


def test_the_film_is_found_inside_a_black_canvas_and_wide_bars_only() -> None:
    from pneumonia.core.preprocess import film_box

    rng = np.random.default_rng(0)
    film = rng.integers(20, 235, (100, 120)).astype(np.uint8)
    canvas = np.zeros((120, 168), dtype=np.uint8)  # 1.2x as tall, 1.4x as wide
    canvas[10:110, 24:144] = film
    assert film_box(canvas) == (10, 110, 24, 144)
    assert film_box(film) is None  # no border
    strip = film.copy()
    strip[:, -6:] = 0  # a dark strip of 5% at one edge, as some Kaggle copies have
    assert film_box(strip) is None
    assert film_box(np.zeros((50, 50), dtype=np.uint8)) is None  # all border: no film
    trimmed = Preprocessing(image_size=32, resize="stretch", borders="trim")
    assert np.array_equal(trimmed.square(canvas), trimmed.square(film))
    kept = Preprocessing(image_size=32, resize="stretch")
    assert not np.array_equal(kept.square(canvas), kept.square(film))


def test_a_contract_that_keeps_borders_records_as_before() -> None:
    kept, trimmed = Preprocessing(), Preprocessing(borders="trim")
    assert "borders" not in kept.model_dump() and trimmed.model_dump()["borders"] == "trim"
    assert kept.cache_key() != trimmed.cache_key()
    assert Preprocessing.model_validate(trimmed.model_dump()) == trimmed
