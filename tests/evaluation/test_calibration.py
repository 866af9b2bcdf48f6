"""Temperature scaling repairs an overconfident model; ECE and Brier measure it."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from pneumonia.core.errors import PneumoniaError
from pneumonia.evaluation.calibration import (
    apply_temperature,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    logit,
    reliability_figure,
)


def _overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated logits z, reported as 4 * z: too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    labels = (rng.random(n) < expit(z)).astype(int)
    return labels, expit(4 * z)


def test_temperature_recovers_the_overconfidence() -> None:
    labels, probs = _overconfident(4000)
    t = fit_temperature(logit(probs), labels)
    assert t == pytest.approx(4.0, rel=0.15)
    after = apply_temperature(probs, t)
    summary = calibration_summary(labels, probs, after)
    assert summary["ece_after"] < summary["ece_before"] / 3
    assert summary["brier_after"] < summary["brier_before"]
    assert roc_auc_score(labels, after) == pytest.approx(roc_auc_score(labels, probs))


def test_ece_of_known_bins() -> None:
    labels = np.array([0, 1, 1, 1])
    probs = np.array([0.95, 0.95, 0.95, 0.95])  # says 0.95, is right 3 times in 4
    assert expected_calibration_error(labels, probs) == pytest.approx(0.2)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_one_class_cannot_be_calibrated() -> None:
    with pytest.raises(PneumoniaError, match="both classes"):
        fit_temperature(np.array([1.0, 2.0]), np.array([1, 1]))


def test_reliability_figure(tmp_path: Path) -> None:
    labels, probs = _overconfident(300)
    out = reliability_figure(labels, {"raw": probs}, tmp_path / "r.png")
    assert Image.open(out).size[0] > 300
