"""Drift statistics with known answers."""

import numpy as np
import pytest

from pneumonia.evaluation.prior import (
    adjust_posteriors,
    em_prior,
    em_priors,
    expected_sensitivity,
    threshold_for_sensitivity,
    thresholds_for_sensitivity,
)
from pneumonia.monitoring.drift import ks, psi, rate_pvalue


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    assert psi(ref, rng.normal(size=5000)) < 0.01
    assert psi(ref, rng.normal(0.5, 1, 5000)) > 0.2
    assert psi(ref, rng.normal(3, 1, 5000)) > 2
    assert np.isfinite(psi(ref, np.full(100, 99.0)))  # all in one bin: large, not infinite
    statistic, pvalue = ks(ref, rng.normal(0.5, 1, 500))
    assert statistic > 0.1 and pvalue < 1e-6


def test_rate_pvalue() -> None:
    assert rate_pvalue(2, 100, 0.02) > 0.3
    assert rate_pvalue(20, 100, 0.02) < 1e-6
    assert rate_pvalue(0, 0, 0.02) == 1.0


def calibrated(prevalence: float, calibrated_at: float, n: int, seed: int) -> np.ndarray:
    """Exact posteriors under `calibrated_at` for data whose real prevalence is `prevalence`:
    scores ~ N(+1, 1) for positives and N(-1, 1) for negatives (log likelihood ratio 2 s)."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < prevalence
    scores = rng.normal(np.where(labels, 1.0, -1.0), 1.0)
    log_odds = 2 * scores + np.log(calibrated_at / (1 - calibrated_at))
    return 1 / (1 + np.exp(-log_odds))


@pytest.mark.parametrize("prevalence", [0.2, 0.5, 0.74, 0.9])
def test_em_recovers_the_prior(prevalence: float) -> None:
    probs = calibrated(prevalence, 0.74, 20000, seed=1)
    estimate, steps = em_prior(probs, 0.74)
    assert estimate == pytest.approx(prevalence, abs=0.02) and steps < 1000
    assert np.mean(adjust_posteriors(probs, 0.74, estimate)) == pytest.approx(estimate, abs=1e-4)


def test_adjusting_to_the_same_prior_changes_nothing() -> None:
    probs = np.array([0.01, 0.3, 0.5, 0.99])
    np.testing.assert_allclose(adjust_posteriors(probs, 0.6, 0.6), probs)
    assert adjust_posteriors(np.array([0.5]), 0.5, 0.2)[0] == pytest.approx(0.2)


def test_threshold_for_sensitivity_with_hard_labels() -> None:
    probs = np.linspace(0.01, 0.99, 99)
    weights = (probs > 0.5).astype(float)  # 49 positives: 0.51 ... 0.99
    threshold, reached = threshold_for_sensitivity(probs, weights, 0.9)
    assert reached >= 0.9 and expected_sensitivity(probs, weights, threshold) == reached
    assert expected_sensitivity(probs, weights, threshold + 0.011) < 0.9  # the highest that works
    assert expected_sensitivity(probs, weights, 0.0) == 1.0


def test_batched_estimators_match_one_batch_at_a_time() -> None:
    rows = np.stack([calibrated(p, 0.74, 400, seed=s) for s, p in enumerate((0.3, 0.5, 0.9))])
    priors, steps = em_priors(rows, 0.74)
    for row, prior, step in zip(rows, priors, steps, strict=True):
        assert em_prior(row, 0.74) == (prior, step)
    weights = adjust_posteriors(rows, 0.74, priors[:, None])
    values, reached = thresholds_for_sensitivity(rows, weights, 0.98)
    for row, w, value, r in zip(rows, weights, values, reached, strict=True):
        assert threshold_for_sensitivity(row, w, 0.98) == (value, r)
    assert priors[0] < priors[1] < priors[2]  # three different sites, three estimates
