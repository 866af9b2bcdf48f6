"""Threshold rules on scores whose answers are known in advance."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia.evaluation.operating import (
    OperatingPointError,
    choose_threshold,
    cost_threshold,
    rates,
    threshold_for_sensitivity,
    youden_threshold,
)


def _scores(n_pos: int, n_neg: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = np.concatenate([rng.beta(5, 2, n_pos), rng.beta(2, 5, n_neg)])
    labels = np.concatenate([np.ones(n_pos, int), np.zeros(n_neg, int)])
    return labels, probs


@pytest.mark.parametrize(("target", "hits"), [(0.99, 198), (0.95, 190), (1.0, 200)])
def test_target_sensitivity_is_hit_exactly(target: float, hits: int) -> None:
    labels, probs = _scores(200, 300)
    t = threshold_for_sensitivity(labels, probs, target)
    assert int((probs[labels == 1] >= t).sum()) == hits
    # best specificity: any higher threshold loses a positive below the target
    higher = np.sort(probs[probs >= t])
    assert rates(labels, probs, higher[1] + 1e-12)["sensitivity"] < target or hits == 200
    assert rates(labels, probs, t)["specificity"] == rates(labels, probs, higher[0])["specificity"]


def test_threshold_sits_between_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.1, 0.4, 0.6, 0.9])
    assert threshold_for_sensitivity(labels, probs, 1.0) == pytest.approx(0.5)
    assert youden_threshold(labels, probs) == pytest.approx(0.5)


def test_youden_and_cost_on_a_known_case() -> None:
    labels = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8])
    j = youden_threshold(labels, probs)  # J: 0.8 at 0.325 beats 0.75 at 0.5
    assert j == pytest.approx(0.325)
    assert rates(labels, probs, j) == {
        "sensitivity": 1.0,
        "specificity": 0.8,
        "positives": 4,
        "negatives": 5,
    }
    assert cost_threshold(labels, probs, cost_ratio=0.1) == pytest.approx(0.5)  # misses are cheap
    assert cost_threshold(labels, probs, cost_ratio=100) == pytest.approx(0.325)


def test_too_few_positives_is_refused_with_the_number_needed() -> None:
    labels, probs = _scores(40, 100)
    with pytest.raises(OperatingPointError, match=r"only 40 PNEUMONIA.*at least 100"):
        threshold_for_sensitivity(labels, probs, 0.99)
    assert threshold_for_sensitivity(labels, probs, 0.95) > 0


@pytest.mark.parametrize("rule", ["target_sensitivity", "youden", "cost", "fixed"])
def test_one_class_is_refused(rule: str) -> None:
    with pytest.raises(OperatingPointError, match="no NORMAL images"):
        choose_threshold(np.ones(200, int), np.linspace(0, 1, 200), rule)  # type: ignore[arg-type]


def test_choose_records_how() -> None:
    labels, probs = _scores(200, 300)
    value, detail = choose_threshold(labels, probs, "target_sensitivity", 0.98)
    assert detail["target_sensitivity"] == 0.98 and detail["sensitivity"] >= 0.98
    assert detail["on"] == "validation" and 0 < value < 1


def test_smoothed_target_is_the_harrell_davis_quantile() -> None:
    grid = np.linspace(0, 1, 1001)
    labels = np.concatenate([np.ones(1001, int), np.zeros(10, int)])
    probs = np.concatenate([grid, np.zeros(10)])
    smooth = threshold_for_sensitivity(labels, probs, 0.95, smooth=True)
    assert smooth == pytest.approx(0.05, abs=0.002)
    # from sample to sample it varies less than the one score at the deciding rank
    from scipy.stats import beta

    rng = np.random.default_rng(0)
    found: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(150):
        pos = rng.beta(5, 2, 400)
        labels = np.concatenate([np.ones(400, int), np.zeros(50, int)])
        probs = np.concatenate([pos, rng.beta(2, 5, 50)])
        for smooth in (False, True):
            found[smooth].append(threshold_for_sensitivity(labels, probs, 0.99, smooth))
    truth = beta.ppf(0.01, 5, 2)
    assert abs(np.mean(found[True]) - truth) < 0.02
    assert np.std(found[True]) < np.std(found[False])


def test_views_pooled_and_worst_have_known_answers() -> None:
    from pneumonia.core.config import OperatingConfig
    from pneumonia.evaluation.operating import choose_over_views

    labels = np.array([1, 1, 1, 1, 0, 0])
    views = {
        "clean": np.array([0.6, 0.7, 0.8, 0.9, 0.1, 0.2]),
        "wide_1.33": np.array([0.3, 0.7, 0.8, 0.9, 0.1, 0.2]),
    }
    rule = {"target_sensitivity": 0.75, "calibrate": False, "smooth": False}
    clean_only, _ = choose_over_views(labels, {"clean": views["clean"]}, OperatingConfig(**rule))
    pooled, detail = choose_over_views(labels, views, OperatingConfig(**rule, views=["wide_1.33"]))
    worst, _ = choose_over_views(
        labels, views, OperatingConfig(**rule, views=["wide_1.33"], pool="worst")
    )
    assert clean_only == pytest.approx(0.65) and pooled == pytest.approx(0.65)
    assert worst == pytest.approx(0.5)
    assert detail["views"] == ["clean", "wide_1.33"] and detail["clean_only_value"] == clean_only
    assert detail["per_view"]["wide_1.33"]["sensitivity"] == 0.75


def test_fit_operating_point_records_the_views() -> None:
    from pneumonia.core.config import OperatingConfig
    from pneumonia.evaluation.operating import fit_operating_point

    labels, probs = _scores(200, 100)
    logits = np.log(probs / (1 - probs))
    cfg = OperatingConfig(views=["crop_85"], pool="worst")
    threshold, calibration, _ = fit_operating_point(labels, logits, cfg, {"crop_85": logits - 1})
    assert calibration is not None and threshold.detail["pool"] == "worst"
    assert threshold.value < threshold.detail["clean_only_value"]  # the lower view decides
    assert threshold.detail["per_view"]["crop_85"]["sensitivity"] >= 0.99


def test_unknown_view_is_a_config_error_before_anything_is_written(tmp_path: Path) -> None:
    from conftest import tiny_config
    from pneumonia.core.errors import ConfigError
    from pneumonia.training.train import train

    cfg = tiny_config(tmp_path, "operating.views=[wide_1.33, nope]")
    with pytest.raises(ConfigError, match=r"operating\.views: .*unknown shift.*nope"):
        train(cfg)
    assert not (tmp_path / "runs").exists()
