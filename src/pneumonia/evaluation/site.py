"""Site adaptation without labels: a threshold for a new site, from its images alone.

A bundle's threshold was chosen on validation images whose share of PNEUMONIA was the
training split's. A site whose case mix differs (its prevalence) needs another threshold to
keep the same sensitivity. From a batch of the site's unlabelled images:

1. the calibrated P(PNEUMONIA) of every image the guard accepts;
2. the site's prevalence by EM on those posteriors (Saerens, Latinne and Decaestecker, 2002);
3. the posteriors re-weighted to that prevalence, used as soft labels: the expected
   sensitivity at a threshold t is sum(w [p >= t]) / sum(w);
4. the highest threshold whose expected sensitivity reaches the bundle's target;
5. a bootstrap over the images for intervals of the prevalence and the threshold.

Assumptions, recorded with the result: only the prevalence moved (label shift: each class
looks as it did at validation), and the posteriors are calibrated. Fewer than `MIN_IMAGES`
usable images, or a batch the guard flags too often, is refused.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumonia.core.bundle import write_meta
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.meta import Threshold
from pneumonia.core.outputs import new_folder
from pneumonia.evaluation.prior import (
    adjust_posteriors,
    em_priors,
    expected_sensitivity,
    thresholds_for_sensitivity,
)
from pneumonia.evaluation.site_curve import (
    ASSUMPTIONS as CURVE_ASSUMPTIONS,
)
from pneumonia.evaluation.site_curve import (
    CURVE_TARGETS,
    LABEL_SHIFT_ONLY,
    Reference,
    aim_with_bias,
    operating_curve,
    target_biases,
)
from pneumonia.inference.loading import Bundle

log = logging.getLogger(__name__)
MIN_IMAGES = 200  # fewer: the prevalence estimate is too loose to move a threshold
MAX_FLAGGED = 0.10  # a larger share flagged by the guard: not the population the model knows
ASSUMPTIONS = (
    "the threshold: label shift (only the prevalence differs from validation, each class "
    "looks the same) and calibrated posteriors; the curve's rates: see curve_assumptions"
)


@dataclass
class SiteFit:
    """The unlabelled-site estimate: prevalence, threshold, and their bootstrap intervals."""

    n: int
    validation_prevalence: float
    prevalence: float
    prevalence_interval: tuple[float, float]
    aim: float  # the expected sensitivity aimed at (the target, or its anchored form)
    threshold: float
    threshold_interval: tuple[float, float]
    expected_sensitivity: float
    bootstraps: int


def site_thresholds(
    probs: np.ndarray, old_prior: float, target: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prevalence, threshold, expected sensitivity there) for each row of a 2-D array of
    calibrated posteriors made under the prior `old_prior` (each row one batch of images)."""
    prior, _ = em_priors(probs, old_prior)
    weights = adjust_posteriors(probs, old_prior, prior[:, None])
    value, reached = thresholds_for_sensitivity(probs, weights, target)
    return prior, value, reached


def fit_site(
    probs: np.ndarray, old_prior: float, aim: float, n_boot: int = 1000, seed: int = 0
) -> SiteFit:
    """Estimate a site's prevalence and the highest threshold whose expected sensitivity
    reaches `aim`, from its calibrated posteriors, with 95% bootstrap intervals (images
    resampled with replacement)."""
    probs = np.asarray(probs, dtype=np.float64)
    if not 0 < old_prior < 1:
        raise PneumoniaError(f"the validation prevalence must be in (0, 1), got {old_prior}")
    prior, value, reached = (float(x[0]) for x in site_thresholds(probs[None], old_prior, aim))
    low = high = np.array([prior, value])
    if n_boot:
        rng = np.random.default_rng(seed)
        draws = probs[rng.integers(0, len(probs), (n_boot, len(probs)))]
        boot_prior, boot_value, _ = site_thresholds(draws, old_prior, aim)
        low, high = np.quantile(np.c_[boot_prior, boot_value], [0.025, 0.975], axis=0)
    return SiteFit(
        n=len(probs),
        validation_prevalence=old_prior,
        prevalence=prior,
        prevalence_interval=(float(low[0]), float(high[0])),
        aim=aim,
        threshold=value,
        threshold_interval=(float(low[1]), float(high[1])),
        expected_sensitivity=reached,
        bootstraps=n_boot,
    )


def anchored_aim(bundle: Bundle, target: float) -> tuple[float, float, float | None]:
    """(the expected sensitivity to aim a site at, the bias correction in it, the EM
    prevalence estimate on validation). Soft labels made of the model's own posteriors
    overstate sensitivity (a positive it misses with confidence weighs almost nothing), so
    the same estimator is run on the bundle's validation reference: the stored threshold,
    which reaches its target on real labels, has there an expected sensitivity above it, and
    the difference is added to `target`. Without a reference, no correction."""
    reference = np.asarray(bundle.meta.reference.get("probability", []), dtype=np.float64)
    stored_target = bundle.meta.threshold.detail.get("target_sensitivity")
    if not len(reference) or stored_target is None:
        log.warning("%s: no validation reference; aiming at the target uncorrected", bundle.path)
        return target, 0.0, None
    old = validation_prevalence(bundle)
    prior, _ = em_priors(reference[None], old)
    weights = adjust_posteriors(reference, old, prior[0])
    bias = expected_sensitivity(reference, weights, bundle.threshold) - float(stored_target)
    return aim_with_bias(target, bias), bias, float(prior[0])


def site_reference(bundle: Bundle) -> Reference | None:
    """The bundle's validation answers for the site curve (None when not recorded)."""
    recorded = bundle.meta.reference
    probs = np.asarray(recorded.get("probability", []), dtype=np.float64)
    if not len(probs):
        return None
    labels = recorded.get("label")
    if labels is not None and len(labels) != len(probs):
        log.warning("%s: reference labels do not match its answers; not used", bundle.path)
        labels = None
    y = None if labels is None else np.asarray(labels, dtype=int)
    return Reference(probs, y, validation_prevalence(bundle))


def validation_prevalence(bundle: Bundle) -> float:
    """The share of PNEUMONIA among the validation images the bundle was calibrated on."""
    v = bundle.meta.validation
    if not v.get("n") or v.get("positives") is None:
        raise PneumoniaError(
            f"{bundle.path}: model.json records no validation counts, so the prevalence its "
            "posteriors assume is unknown; re-tune it on labelled data (`pneumonia threshold "
            "BUNDLE --data ...`) first"
        )
    return float(v["positives"]) / float(v["n"])


def usable_probabilities(
    bundle: Bundle, paths: list[str], workers: int | None = None, show: bool = True
) -> tuple[np.ndarray, dict[str, int]]:
    """(calibrated P(PNEUMONIA) of the readable images the guard accepts, counts of images,
    unreadable and flagged)."""
    from pneumonia.core.options import Scoring
    from pneumonia.inference.predictions import stream_logits, to_probability

    raw, ood, errors, _ = stream_logits(bundle, paths, Scoring(workers, show))
    readable = np.array([e is None for e in errors], dtype=bool)
    inside = readable.copy()
    if bundle.guard is not None:
        inside &= ood <= bundle.guard.threshold
    for path, error in zip(paths, errors, strict=True):
        if error is not None:
            log.warning("%s: %s (left out)", path, error)
    counts = {
        "images": len(paths),
        "unreadable": int((~readable).sum()),
        "flagged": int((readable & ~inside).sum()),
    }
    return to_probability(raw[inside], bundle.temperature), counts


def check_batch(source: str, counts: dict[str, int], usable: int, min_images: int) -> None:
    """Refuse a batch the guard flags too often, or one with too few usable images."""
    readable = counts["images"] - counts["unreadable"]
    if readable and counts["flagged"] / readable > MAX_FLAGGED:
        raise PneumoniaError(
            f"{source}: the guard flags {counts['flagged']} of {readable} readable images "
            f"({100 * counts['flagged'] / readable:.0f}%, limit {100 * MAX_FLAGGED:.0f}%) as "
            "not looking like a pediatric frontal chest X-ray; a threshold adapted to them "
            "would mean nothing. Check what the folder holds, or calibrate on labelled images "
            "(`pneumonia threshold BUNDLE --data LABELLED --out SITE`)"
        )
    if usable < min_images:
        raise PneumoniaError(
            f"{source}: {usable} usable images (of {counts['images']}: {counts['unreadable']} "
            f"unreadable, {counts['flagged']} flagged by the guard); estimating a site's "
            f"prevalence needs at least {min_images}. Collect more of the site's images, or "
            "calibrate on labelled ones (`pneumonia threshold BUNDLE --data LABELLED --out SITE`)"
        )


def adapt_to_site(
    bundle: Bundle,
    inputs: list[str],
    out: Path,
    target: float | None = None,
    n_boot: int = 1000,
    workers: int | None = None,
    show: bool = True,
    min_images: int = MIN_IMAGES,
) -> dict[str, Any]:
    """Write a copy of `bundle` into `out` whose threshold keeps the target sensitivity at the
    site whose unlabelled images `inputs` (files, folders, globs) are. Returns a summary."""
    from pneumonia.evaluation.tune import copy_bundle
    from pneumonia.inference.predictions import expand_inputs

    new_folder(out, "site bundle")
    source = ", ".join(inputs)
    paths = expand_inputs(inputs)
    probs, counts = usable_probabilities(bundle, paths, workers, show)
    check_batch(source, counts, len(probs), min_images)
    if bundle.guard is None:
        log.warning(
            "%s has no guard: images that are not chest X-rays are not left out", bundle.path
        )
    previous = bundle.meta.threshold
    target = target or float(previous.detail.get("target_sensitivity", 0.99))
    aim, bias, reference_estimate = anchored_aim(bundle, target)
    targets = tuple(sorted({*CURVE_TARGETS, target}))
    reference = site_reference(bundle) or Reference(
        np.empty(0), None, validation_prevalence(bundle)
    )
    biases: float | list[float] = bias
    if reference.labels is not None:  # anchored at every target, on validation's labels
        biases = target_biases(reference, targets)
        bias = biases[targets.index(target)]
        aim = aim_with_bias(target, bias)
    fit = fit_site(probs, validation_prevalence(bundle), aim, n_boot)
    curve = operating_curve(probs, reference, targets, biases, n_boot)
    detail = {
        "target_sensitivity": target,
        "on": "unlabelled site images",
        "data": source,
        **counts,
        "usable": fit.n,
        **{k: v for k, v in asdict(fit).items() if k != "n"},
        "estimator_bias": bias,
        "validation_estimated_prevalence": reference_estimate,
        "method": "EM prior (Saerens et al. 2002), prior-adjusted posteriors as soft labels, "
        "the expected sensitivity aimed at the target plus the estimator's bias on the "
        f"validation reference; {n_boot} bootstrap resamples for the intervals",
        "assumptions": ASSUMPTIONS,
        "curve": curve,
        "curve_assumptions": CURVE_ASSUMPTIONS
        if reference.labels is not None
        else LABEL_SHIFT_ONLY,
        "previous": previous.model_dump(),
    }
    value = float(np.clip(fit.threshold, 1e-7, 1 - 1e-7))
    threshold = Threshold(value=value, rule="site_unlabelled", detail=detail)
    folder = copy_bundle(bundle, out)
    write_meta(bundle.meta.model_copy(update={"threshold": threshold}), folder)
    return {"bundle": str(folder), "fit": fit, "counts": counts, "previous": previous.value,
            "validation_estimate": reference_estimate, "curve": curve,
            "target": target}  # fmt: skip
