"""Grey levels of any depth to 8 bits: by bit depth for integers, by range otherwise."""

import numpy as np
import pytest

from pneumonia.data.levels import to_uint8_bits, to_uint8_range


def test_integers_are_scaled_by_their_bit_depth() -> None:
    eight = np.array([[0, 90, 181]], np.uint16)
    assert to_uint8_bits(eight * 257).tolist() == [[0, 90, 181]]  # 16 bits: as saved
    twelve = np.array([[0, 2048, 4095]], np.uint16)
    assert to_uint8_bits(twelve).tolist() == [[0, 128, 255]]  # 12 bits
    assert to_uint8_bits(np.array([[0, 200]], np.uint16)).tolist() == [[0, 200]]  # 8 bits
    assert to_uint8_bits(np.array([[-5, 5]], np.int32)).tolist() == [[0, 255]]  # by range


def test_floats_are_scaled_by_their_range_and_must_be_numbers() -> None:
    assert to_uint8_range(np.array([[1.0, 2.0, 3.0]])).tolist() == [[0, 128, 255]]
    assert to_uint8_range(np.full((2, 2), 7.0)).max() == 0  # flat: black, not a division by 0
    with pytest.raises(ValueError, match="not finite"):
        to_uint8_range(np.array([[0.0, np.inf]]))
