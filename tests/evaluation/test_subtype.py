"""The subtype output's metrics: bacterial (0) against viral (1) on the images whose subtype
is known, with known answers, and the three classes the two outputs make together."""

import math

import numpy as np
import pytest

from pneumonia.evaluation.subtype import (
    headline_line,
    subtype_metrics,
    subtype_section,
    three_class_confusion,
)


def test_subtype_metrics_skip_unknown_and_count_viral_as_positive() -> None:
    codes = np.array([0, 0, 0, 1, 1, -1, -1])
    p_viral = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.99, 0.01])  # the -1 rows must not count
    m = subtype_metrics(codes, p_viral, 0.5)
    assert (m["n"], m["viral"]) == (5, 2)
    assert m["sensitivity_viral"] == 0.5  # 0.9 found, 0.4 missed
    assert m["specificity_viral"] == pytest.approx(2 / 3)  # 0.6 called viral
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["roc_auc"] == pytest.approx(5 / 6)  # 5 of the 6 (viral, bacterial) pairs ordered


def test_three_class_confusion_uses_both_outputs() -> None:
    # truth: NORMAL (-2), bacterial (0), viral (1), unknown subtype (-1, left out)
    codes = np.array([-2, -2, 0, 0, 1, 1, -1])
    screen = np.array([0.1, 0.8, 0.9, 0.9, 0.9, 0.2, 0.9])
    p_viral = np.array([0.9, 0.2, 0.1, 0.7, 0.8, 0.9, 0.5])
    found = three_class_confusion(codes, screen, p_viral, (0.5, 0.5))
    assert found["classes"] == ["NORMAL", "bacterial", "viral"]
    assert found["matrix"] == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]


def test_section_has_patient_intervals_around_the_estimate() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 60)
    codes = np.array([-1] * 20 + [0] * 30 + [1] * 30)
    p_viral = np.clip(np.where(codes == 1, 0.7, 0.3) + rng.normal(0, 0.2, 80), 0, 1)
    screen = np.where(labels == 1, 0.9, 0.1)
    patients = [f"p{i // 2}" for i in range(80)]
    section = subtype_section(labels, codes, screen, p_viral, (0.5, 0.5), patients, n_boot=200)
    auc = section["metrics"]["roc_auc"]
    low, high = section["intervals"]["roc_auc"]
    assert low < auc < high and high - low < 0.3
    assert section["three_class"]["matrix"][0] == [20, 0, 0]
    assert f"ROC-AUC {auc:.3f}" in headline_line(section)


def test_one_subtype_only_has_no_ranking() -> None:
    m = subtype_metrics(np.array([0, 0, -1]), np.array([0.2, 0.7, 0.5]), 0.5)
    assert math.isnan(m["roc_auc"]) and m["n"] == 2
