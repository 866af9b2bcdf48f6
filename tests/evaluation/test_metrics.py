"""Metrics at a threshold, checked against counts worked out by hand."""

import json
import math

import numpy as np
import pytest

from pneumonia.evaluation.metrics import binary_metrics, headline, jsonable


def test_counts_worked_out_by_hand() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7, 0.55, 0.95])
    m = binary_metrics(labels, probs, 0.5)
    assert m["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 5}
    assert m["sensitivity"] == pytest.approx(5 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(5 / 6)
    assert m["npv"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx((5 / 6 + 3 / 4) / 2)
    assert m["roc_auc"] == pytest.approx(22 / 24)
    assert m["classification_report"]["PNEUMONIA"]["support"] == 6
    assert binary_metrics(labels, probs, 0.35)["sensitivity"] == 1.0


def test_one_class_leaves_ranking_metrics_undefined() -> None:
    m = binary_metrics(np.ones(4, int), np.array([0.2, 0.6, 0.7, 0.9]), 0.5)
    assert math.isnan(m["roc_auc"]) and math.isnan(m["specificity"])
    assert m["sensitivity"] == 0.75
    text = json.dumps(jsonable(headline(m)))
    assert "NaN" not in text and json.loads(text)["roc_auc"] is None
