import numpy as np
import pytest

from pneumonia.data.synthetic import synthetic_xray


def test_images_have_the_asked_size_and_are_uint8() -> None:
    img = synthetic_xray("NORMAL", 37, 53, np.random.default_rng(0))
    assert img.shape == (37, 53) and img.dtype == np.uint8


def test_pneumonia_adds_opacity_inside_the_lungs() -> None:
    rng = np.random.default_rng(1)
    normal = [synthetic_xray("NORMAL", 64, 64, rng) for _ in range(20)]
    sick = [synthetic_xray("PNEUMONIA", 64, 64, rng) for _ in range(20)]
    lung_box = (slice(16, 44), slice(12, 26))  # the left lung field
    assert (
        np.mean([s[lung_box].mean() for s in sick])
        > np.mean([n[lung_box].mean() for n in normal]) + 5
    )


def test_seeded_generation_repeats() -> None:
    a = synthetic_xray("PNEUMONIA", 32, 32, np.random.default_rng(5))
    b = synthetic_xray("PNEUMONIA", 32, 32, np.random.default_rng(5))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        synthetic_xray("NORMAL", 0, 10)
