"""The bundle schema's own logic: the borderline band around the threshold."""

import math

import pytest
from pydantic import ValidationError

from pneumonia.core.meta import Borderline


def band(width: float = 1.0) -> Borderline:
    return Borderline(
        logit=width, quantile=0.95, pairs=40, renderings=["original"], measured_on="test"
    )


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_the_band_is_symmetric_in_logit_around_any_threshold() -> None:
    assert band(1.0).limits(0.5) == pytest.approx((sigmoid(-1), sigmoid(1)))
    low, high = band(0.5).limits(0.1)
    z = math.log(0.1 / 0.9)
    assert (low, high) == pytest.approx((sigmoid(z - 0.5), sigmoid(z + 0.5)))
    assert low < 0.1 < high


def test_contains_takes_the_low_end_and_leaves_the_high_end_out() -> None:
    b = band(1.0)
    low, high = b.limits(0.5)
    assert b.contains(low, 0.5) and b.contains(0.5, 0.5) and b.contains(high - 1e-9, 0.5)
    assert not b.contains(high, 0.5) and not b.contains(low - 1e-9, 0.5)
    assert not b.contains(0.95, 0.5) and b.contains(0.95, 0.9)  # it moves with the threshold


def test_a_band_without_width_or_pairs_is_refused() -> None:
    with pytest.raises(ValidationError):
        band(0.0)
    with pytest.raises(ValidationError):
        Borderline(logit=1, quantile=1.0, pairs=3, renderings=[], measured_on="x")
