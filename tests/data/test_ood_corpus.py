"""The generated out-of-distribution corpus: every kind, the right shapes, reproducible."""

import numpy as np

from pneumonia.data.ood_corpus import KINDS, MAKERS, cropped, inverted, ood_corpus
from pneumonia.data.synthetic import synthetic_xray


def test_every_kind_is_a_uint8_image_of_the_asked_size() -> None:
    rng = np.random.default_rng(0)
    for kind, make in MAKERS.items():
        img = make(rng, 70, 90)
        assert img.dtype == np.uint8 and img.shape == (70, 90), kind
    assert np.ptp(MAKERS["blank"](rng, 50, 50)) <= 3  # one grey level, faint noise
    assert MAKERS["noise"](rng, 64, 64).std() > 60
    doc = MAKERS["document"](rng, 200, 300)
    assert np.median(doc) > 220 and doc.min() < 80  # white page, dark text


def test_xray_kinds_transform_the_given_xray() -> None:
    rng = np.random.default_rng(1)
    xray = synthetic_xray("NORMAL", 120, 100, rng)
    np.testing.assert_array_equal(inverted(xray, rng), 255 - xray)
    piece = cropped(xray, rng)
    assert piece.shape[0] <= 0.3 * 120 + 1 and piece.shape[1] <= 0.3 * 100 + 1


def test_corpus_is_labelled_and_reproducible() -> None:
    xrays = [synthetic_xray("PNEUMONIA", 96, 96, np.random.default_rng(i)) for i in range(3)]
    first, again = ood_corpus(4, xrays, seed=9), ood_corpus(4, xrays, seed=9)
    assert [k for k, _ in first] == [k for k in KINDS for _ in range(4)]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, again, strict=True))
    assert {k for k, _ in ood_corpus(2, [], seed=0)} == set(MAKERS)  # no X-rays, no X-ray kinds
