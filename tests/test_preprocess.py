import numpy as np
import pytest
import torch

from pneumonia.preprocess import Preprocessing, fit_to_square, square_stats, to_tensor


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
