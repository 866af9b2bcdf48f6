"""Intervals: they contain the estimate, narrow with more data, and resample patients."""

import numpy as np
import pytest

from pneumonia.evaluation.metrics import binary_metrics
from pneumonia.evaluation.uncertainty import bootstrap, clopper_pearson, metric_intervals


def _scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.6).astype(int)
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    return labels, probs


def test_intervals_contain_the_estimate_and_narrow_with_more_data() -> None:
    widths = []
    for n in (100, 1600):
        labels, probs = _scores(n)
        point = binary_metrics(labels, probs, 0.5)
        ci = metric_intervals(labels, probs, 0.5, n_boot=200)
        for key in ("roc_auc", "sensitivity", "specificity", "accuracy"):
            low, high = ci["bootstrap"][key]
            assert low <= point[key] <= high, key
        low, high = ci["clopper_pearson"]["sensitivity"]
        assert low <= point["sensitivity"] <= high
        widths.append(ci["bootstrap"]["roc_auc"][1] - ci["bootstrap"]["roc_auc"][0])
    assert widths[1] < widths[0] / 2


def test_clopper_pearson_known_values() -> None:
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.3085, abs=1e-4)
    low, high = clopper_pearson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.6915, abs=1e-4)
    assert clopper_pearson(5, 10) == pytest.approx((0.1871, 0.8129), abs=1e-4)


def test_patient_bootstrap_keeps_patients_whole() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    probs = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.3])
    groups = ["a", "a", "a", "b", "b", "b"]
    sizes = bootstrap(labels, probs, lambda y, p: {"n": float(len(y))}, groups, n_boot=50)
    assert sizes["n"] == (6.0, 6.0)  # 2 patients of 3 images: always 6 images
    whole = bootstrap(labels, probs, lambda y, p: {"pos": float(y.sum())}, groups, n_boot=200)
    assert set(whole["pos"]) <= {0.0, 3.0, 6.0}  # a patient's images come and go together
    singles = bootstrap(labels, probs, lambda y, p: {"pos": float(y.sum())}, None, n_boot=200)
    assert singles["pos"][0] < 3 < singles["pos"][1]
