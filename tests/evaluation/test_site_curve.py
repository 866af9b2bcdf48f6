"""The site curve: closed forms, and intervals that hold when the NORMAL films themselves move."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from pneumonia.core.card import curve_cell
from pneumonia.evaluation.site_curve import (
    MAX_SPEC_WIDTH,
    Reference,
    expected_rates,
    operating_curve,
    specificity_from_calls,
    tail_bounds,
    target_biases,
)

MU = 1.5  # scores N(+MU, 1) for PNEUMONIA, N(-MU + shift, 1) for NORMAL
VALIDATION_PRIOR = 0.74
TARGETS = (0.95, 0.97, 0.98, 0.99)


def films(n: int, prevalence: float, normal_shift: float = 0.0, seed: int = 0):
    """(labels, posteriors calibrated on validation) of `n` films; `normal_shift` moves the
    NORMAL films' scores towards PNEUMONIA, as an acquisition unlike validation's would."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < prevalence
    x = rng.normal(np.where(labels, MU, -MU + normal_shift), 1.0)
    return labels, expit(2 * MU * x + logit(VALIDATION_PRIOR))


def reference(n: int = 1500, seed: int = 1) -> Reference:
    labels, probs = films(n, VALIDATION_PRIOR, seed=seed)
    return Reference(probs, labels.astype(np.int64), VALIDATION_PRIOR)


def truth(labels: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[float, float]:
    called = probs >= threshold
    return float(called[labels].mean()), float((~called[~labels]).mean())


def test_expected_rates_of_uniform_calibrated_scores_have_closed_forms() -> None:
    # p ~ U(0, 1) with P(positive | p) = p: sensitivity(t) = 1 - t^2, specificity = 2t - t^2
    p = np.linspace(0, 1, 100001)
    t = np.array([0.2, 0.5])
    sens, spec = expected_rates(np.stack([p, p]), np.stack([p, p]), t)
    assert sens == pytest.approx(1 - t**2, abs=1e-4)
    assert spec == pytest.approx(2 * t - t**2, abs=1e-4)


def test_specificity_from_the_share_called_is_exact_with_the_true_prevalence() -> None:
    labels, probs = films(3000, 0.6, normal_shift=0.7, seed=3)
    for t in (0.2, 0.5, 0.9):
        sens, spec = truth(labels, probs, t)
        q = float((probs >= t).mean())
        assert specificity_from_calls(np.array(q), np.array(labels.mean()), np.array(sens)) == (
            pytest.approx(spec, abs=1e-9)
        )


def test_tail_bounds_hold_the_prevalence_while_few_normal_films_reach_the_tail() -> None:
    for prevalence, shift in ((0.3, 0.0), (0.6, 0.4), (0.8, 0.4)):
        labels, probs = films(20000, prevalence, shift, seed=4)
        h = 0.96  # about the level 80% of the PNEUMONIA films reach
        q_h, s1_h = (probs >= h).mean(), (probs[labels] >= h).mean()
        assert (probs[~labels] >= h).mean() <= 0.05  # the bound's assumption holds here
        low, high = tail_bounds(np.array(q_h), np.array(s1_h), 0.05)
        assert low <= labels.mean() <= high
    assert tail_bounds(np.array(0.0), np.array(0.5)).tolist() == [0.0, 0.0]


def test_without_validation_labels_the_curve_recovers_known_thresholds_and_rates() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random(20000)  # calibrated, prevalence 0.5, as validation's (no prior shift)
    labels = rng.random(20000) < probs
    curve = operating_curve(probs, Reference(np.empty(0), None, 0.5), TARGETS, n_boot=200)
    assert [row["target"] for row in curve] == list(TARGETS)
    for row in curve:
        t = np.sqrt(1 - row["target"])  # where 1 - t^2 reaches the target
        assert row["threshold"] == pytest.approx(t, abs=0.01)
        assert row["specificity"] == pytest.approx(2 * t - t**2, abs=0.01)
        assert row["sensitivity"] == pytest.approx(row["target"], abs=0.002)
        for key in ("threshold", "specificity"):
            low, high = row[f"{key}_interval"]
            assert low <= row[key] <= high and high - low < 0.05
        sens, spec = truth(labels, probs, row["threshold"])
        assert sens == pytest.approx(row["target"], abs=0.01)
        assert spec == pytest.approx(row["specificity"], abs=0.02)
    thresholds = [row["threshold"] for row in curve]
    assert thresholds == sorted(thresholds, reverse=True)  # more sensitivity, lower threshold


def test_an_aim_raised_by_the_bias_lowers_the_threshold_and_the_claims() -> None:
    probs = np.random.default_rng(1).random(20000)
    ref = Reference(np.empty(0), None, 0.5)
    plain = operating_curve(probs, ref, (0.95,), n_boot=0)[0]
    biased = operating_curve(probs, ref, (0.95,), bias=0.02, n_boot=0)[0]
    assert biased["aim"] == pytest.approx(0.97)
    assert biased["threshold"] == pytest.approx(np.sqrt(1 - 0.97), abs=0.01)
    assert biased["threshold"] < plain["threshold"]
    assert biased["sensitivity"] == pytest.approx(0.95, abs=0.002)


@pytest.mark.parametrize("shift", [0.0, 0.4])
def test_the_curve_covers_a_site_whose_normal_films_moved(shift: float) -> None:
    """A site at prevalence 0.6 whose NORMAL films score higher than validation's (at most
    5% of them past the tail level): every row's intervals hold the site's true rates."""
    ref = reference()
    labels, probs = films(2000, 0.6, shift, seed=2)
    curve = operating_curve(probs, ref, TARGETS, target_biases(ref, TARGETS), n_boot=200)
    for row in curve:
        sens, spec = truth(labels, probs, row["threshold"])
        assert row["identified"], row
        low, high = row["sensitivity_interval"]
        assert low - 0.01 <= sens <= high + 0.01 and high - low <= 0.06
        low, high = row["specificity_interval"]
        assert low - 0.01 <= spec <= high + 0.01 and high - low <= MAX_SPEC_WIDTH


def test_label_shift_alone_would_overstate_the_moved_sites_specificity() -> None:
    """What the tail bound is for: EM alone claims too high a specificity at that site."""
    ref = reference()
    labels, probs = films(2000, 0.6, 0.4, seed=2)
    curve = operating_curve(probs, ref, TARGETS, target_biases(ref, TARGETS), 200, bounds=("em",))
    for row in curve:
        assert truth(labels, probs, row["threshold"])[1] < row["specificity_interval"][0]


def test_a_batch_that_cannot_bound_the_specificity_claims_none() -> None:
    """NORMAL films moved past the assumption: the bounds spread wider than 0.25, and the row
    says it cannot tell instead of claiming a rate."""
    ref = reference()
    labels, probs = films(2000, 0.6, 0.8, seed=2)
    curve = operating_curve(probs, ref, TARGETS, target_biases(ref, TARGETS), n_boot=200)
    unknown = [row for row in curve if not row["identified"]]
    assert unknown
    for row in unknown:
        low, high = row["specificity_bounds"]
        assert row["specificity"] is None and row["specificity_interval"] is None
        assert high - low > MAX_SPEC_WIDTH
        assert low <= truth(labels, probs, row["threshold"])[1] <= high  # still true bounds
        assert curve_cell(row, "specificity", 3) == f"cannot tell ({low:.3f}-{high:.3f})"
