"""A site's operating curve without labels: per target, a threshold and the rates that hold.

For each target sensitivity, the threshold the soft-label estimator of `site.py` chooses;
then what a site can expect there, claimed only as far as its images support it:

- sensitivity: validation's labelled PNEUMONIA films' share at or above the threshold (the
  threshold for a target is the soft-label one, anchored per target on validation's labels);
- specificity, from the site's own calls: of its images a share Q(t) is called PNEUMONIA,
  Q = pi sens + (1 - pi)(1 - spec), so spec = 1 - (Q - pi sens) / (1 - pi), with pi the
  site's prevalence bounded two ways: EM (right when only the prevalence moved) and the tail
  bound (right when the NORMAL films themselves moved): above the level h that
  `TAIL_SHARE` of validation's PNEUMONIA films reach, Q(h) = pi S1(h) + (1 - pi) S0(h) with
  0 <= S0(h) <= `NORMAL_TAIL`, so (Q(h) - m) / (S1(h) - m) <= pi <= Q(h) / S1(h).

Intervals: 95%, over bootstrap resamples of the site's images and of validation's PNEUMONIA
films (the sensitivity's also over the binomial spread of the site's own PNEUMONIA films);
the specificity's spans every bound of pi (`specificity_bounds`). A row whose specificity
bounds are wider than `MAX_SPEC_WIDTH` claims no specificity (`specificity` and its interval
null, `identified` false): this batch cannot tell.
Study and adopt rule: docs/robustness.md, "A site curve that claims only what holds".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pneumonia.evaluation.prior import adjust_posteriors, em_priors, thresholds_for_sensitivity

CURVE_TARGETS = (0.95, 0.97, 0.98, 0.99)
TAIL_SHARE = 0.80  # h: the level this share of validation's PNEUMONIA films reach
NORMAL_TAIL = 0.05  # m: at most this share of a site's NORMAL films above h (assumed)
MAX_SPEC_WIDTH = 0.25  # a wider specificity interval is not an answer
BOUNDS = ("em", "tail")  # the prevalence bounds the specificity's interval spans
ASSUMPTIONS = (
    "the PNEUMONIA films score as validation's did; the NORMAL films may differ (at most "
    f"{NORMAL_TAIL:.0%} of them above the level {TAIL_SHARE:.0%} of validation's PNEUMONIA "
    "films reach); the posteriors are calibrated (temperature scaling on validation)"
)
LABEL_SHIFT_ONLY = (
    "label shift only: the bundle records no validation labels, so the NORMAL films are "
    "assumed to look as at validation (re-tune it with `pneumonia threshold BUNDLE --data` "
    "to record them)"
)


@dataclass(frozen=True)
class Reference:
    """Validation's answers a bundle records: calibrated probabilities, labels (when
    recorded) and the prevalence the posteriors assume."""

    probs: np.ndarray
    labels: np.ndarray | None
    prior: float


def aim_with_bias(target: float, bias: float) -> float:
    """The expected sensitivity to aim at for `target`: raised by the estimator's
    overstatement `bias` (never lowered), below 1."""
    return float(min(target + max(bias, 0.0), 1 - 1e-4))


def expected_rates(
    probs: np.ndarray, weights: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(expected sensitivity, expected specificity) at one threshold per row of 2-D `probs`,
    with `weights` each image's probability of being positive (the soft labels):
    sensitivity = sum(w [p >= t]) / sum(w), specificity = sum((1 - w) [p < t]) / sum(1 - w)."""
    p, w = np.atleast_2d(probs), np.atleast_2d(weights)
    called = p >= np.asarray(thresholds, dtype=np.float64).reshape(-1, 1)
    sens = (w * called).sum(1) / np.maximum(w.sum(1), 1e-12)
    spec = ((1 - w) * ~called).sum(1) / np.maximum((1 - w).sum(1), 1e-12)
    return sens, spec


def positive_rates(
    positives: np.ndarray, thresholds: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Share of validation's PNEUMONIA probabilities at or above each threshold: row 0 as
    measured, then `n_boot` bootstrap resamples of those films (every threshold's share from
    the same resample); shape (1 + n_boot, thresholds)."""
    resamples = positives[rng.integers(0, len(positives), (n_boot, len(positives)))]
    return called_share(np.vstack([positives[None], resamples]), thresholds)


def called_share(draws: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each resample's share of images at or above each threshold: (resamples, thresholds)."""
    return np.asarray((draws[:, :, None] >= np.asarray(thresholds)[None, None]).mean(1))


def specificity_from_calls(q: np.ndarray, prior: np.ndarray, sens: np.ndarray) -> np.ndarray:
    """spec = 1 - (q - prior sens) / (1 - prior), within [0, 1]: the NORMAL films' share
    below a threshold, from the share `q` of all images above it."""
    return np.asarray(np.clip(1 - (q - prior * sens) / np.maximum(1 - prior, 1e-6), 0, 1))


def tail_bounds(q_h: np.ndarray, s1_h: np.ndarray, m: float = NORMAL_TAIL) -> np.ndarray:
    """(lower, upper) bounds of the prevalence from the share `q_h` of the site above h,
    where a share `s1_h` of PNEUMONIA films and at most `m` of NORMAL ones lie."""
    upper = q_h / np.maximum(s1_h, 1e-6)
    lower = (q_h - m) / np.maximum(s1_h - m, 1e-6)
    return np.clip(np.stack([lower, upper]), 0, 1)


def acc_prevalence(q_h: float, s1_h: float, s0_h: float) -> float:
    """The prevalence by adjusted counting above h, validation's shares as the site's (right
    under label shift): (Q(h) - S0(h)) / (S1(h) - S0(h)), within [0, 1]."""
    return float(np.clip((q_h - s0_h) / max(s1_h - s0_h, 1e-6), 0, 1))


def target_biases(reference: Reference, targets: tuple[float, ...]) -> list[float]:
    """Per target, how far the soft-label estimator's sensitivity on validation lies above the
    target at the threshold that reaches it with validation's labels (the anchor of
    `site.anchored_aim`, at every target)."""
    assert reference.labels is not None
    prior, _ = em_priors(reference.probs[None], reference.prior)
    weights = adjust_posteriors(reference.probs, reference.prior, prior[0])
    positives = np.sort(reference.probs[reference.labels == 1])
    biases = []
    for target in targets:  # the highest threshold keeping `target` of the positives
        t = positives[min(int(np.floor((1 - target) * len(positives))), len(positives) - 1)]
        biases.append(float(expected_rates(reference.probs, weights, np.array([t]))[0][0] - target))
    return biases


def _interval(x: np.ndarray) -> list[float]:
    return [float(q) for q in np.quantile(x, [0.025, 0.975])]


def _resamples(probs: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The site's probabilities (row 0) and `n_boot` resamples of them with replacement."""
    p = np.asarray(probs, dtype=np.float64)[None]
    if not n_boot:
        return p
    return np.concatenate([p, p[0][rng.integers(0, p.shape[1], (n_boot, p.shape[1]))]])


def operating_curve(
    probs: np.ndarray,
    reference: Reference,
    targets: tuple[float, ...] = CURVE_TARGETS,
    bias: float | list[float] = 0.0,
    n_boot: int = 1000,
    seed: int = 0,
    bounds: tuple[str, ...] = BOUNDS,
) -> list[dict[str, Any]]:
    """The trade a site chooses from: for each target sensitivity, the threshold whose
    soft-label sensitivity reaches it plus `bias` (the estimator's overstatement on
    validation: one for all, or one per target as `target_biases` measures), and the
    sensitivity and specificity expected there (module docstring), with their intervals;
    `bounds` names the prevalence bounds the specificity spans."""
    rng = np.random.default_rng(seed)
    draws = _resamples(probs, n_boot, rng)
    em, _ = em_priors(draws, reference.prior)
    weights = adjust_posteriors(draws, reference.prior, em[:, None])
    biases = np.broadcast_to(np.asarray(bias, dtype=np.float64), (len(targets),))
    aims = [aim_with_bias(t, b) for t, b in zip(targets, biases, strict=True)]
    chosen = np.array([thresholds_for_sensitivity(draws, weights, a)[0] for a in aims]).T
    t = chosen[0]  # the thresholds the site would store: rates are claimed at these
    q = called_share(draws, t)
    estimate = float(em[0])  # the point's prevalence: EM, or adjusted counting with labels
    if reference.labels is None:  # the soft-label sensitivity, less the estimator's bias
        sens = np.stack([expected_rates(draws, weights, x)[0] for x in t], 1)
        sens = np.clip(sens - np.maximum(biases, 0), 0, 1)
        priors = em[:, None, None]
    else:
        positives = reference.probs[reference.labels == 1]
        h = np.quantile(positives, 1 - TAIL_SHARE)
        rates = positive_rates(positives, np.r_[t, h], len(draws) - 1, rng)
        sens, s1_h = rates[:, :-1], rates[:, -1]
        q_h = called_share(draws, np.array([h]))[:, 0]
        named = {"em": [em], "tail": list(tail_bounds(q_h, s1_h))}
        priors = np.stack([x for b in bounds for x in named[b]])[..., None]  # (k, draws, 1)
        normals = reference.probs[reference.labels == 0]
        estimate = acc_prevalence(q_h[0], s1_h[0], float((normals >= h).mean()))
    # the site's own PNEUMONIA films are a sample too: its measured rate varies about sens
    n_pos = max(1, round(estimate * draws.shape[1]))
    claimed = np.vstack([sens[:1], rng.binomial(n_pos, sens[1:]) / n_pos])
    spec = specificity_from_calls(q[None], priors, sens[None])  # (k, draws, targets)
    point_prior = np.clip(estimate, priors[:, 0, 0].min(), priors[:, 0, 0].max())
    point_spec = specificity_from_calls(q[0], point_prior, sens[0])
    rows = []
    for j, target in enumerate(targets):
        boot = slice(1, None) if n_boot else slice(None)
        s_low, s_high = _interval(claimed[boot, j])
        s_low, s_high = min(s_low, sens[0, j]), max(s_high, sens[0, j])
        spec_interval = [
            float(min(np.quantile(spec[:, boot, j].min(0), 0.025), point_spec[j])),
            float(max(np.quantile(spec[:, boot, j].max(0), 0.975), point_spec[j])),
        ]
        identified = spec_interval[1] - spec_interval[0] <= MAX_SPEC_WIDTH
        rows.append({
            "target": target,
            "aim": aims[j],
            "threshold": float(t[j]),
            "threshold_interval": _interval(chosen[boot, j]),
            "sensitivity": float(sens[0, j]),
            "sensitivity_interval": [float(s_low), float(s_high)],
            "specificity": float(point_spec[j]) if identified else None,
            "specificity_interval": spec_interval if identified else None,
            "specificity_bounds": spec_interval,
            "identified": identified,
        })  # fmt: skip
    return rows
