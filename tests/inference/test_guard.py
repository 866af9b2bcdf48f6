"""The out-of-distribution guard: its geometry on known Gaussians, its threshold rule, its
file, and (known answers) what the shipped network's features let it flag."""

import os
from pathlib import Path

import numpy as np
import pytest

from pneumonia.data.ood_corpus import KINDS, MAKERS, ood_corpus
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.inference.guard import (
    Guard,
    Layout,
    fit_guard,
    flag_rates,
    load_guard,
    save_guard,
    set_threshold,
    thumbnails,
)
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import batch_outputs, predict_paths


def two_gaussians(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two classes in 8 dimensions, very different spreads per axis (what whitening is for)."""
    labels = np.arange(n) % 2
    scales = np.array([10.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05])
    x = rng.normal(size=(n, 8)) * scales
    x[:, 0] += np.where(labels == 1, 60.0, -60.0)  # 6 standard deviations
    return x, labels


def test_training_like_points_score_about_one_and_far_points_high() -> None:
    rng = np.random.default_rng(0)
    x, y = two_gaussians(4000, rng)
    guard = fit_guard(x, y, components=8)
    held_out, _ = two_gaussians(2000, rng)
    assert np.median(guard.scores(held_out)) == pytest.approx(0.92, abs=0.1)  # chi2(8) / 8
    # a small step along the narrowest axis is far in Mahalanobis terms; the same step
    # along the widest axis is not: the guard sees shape, not just distance
    narrow, wide = held_out[:200].copy(), held_out[:200].copy()
    narrow[:, 7] += 1.0
    wide[:, 1] += 1.0
    assert guard.scores(narrow).min() > 10 * guard.scores(wide).max()
    # halfway between the classes is out of distribution although near the overall mean
    assert guard.scores(np.zeros((1, 8)))[0] > np.quantile(guard.scores(held_out), 0.999)


def test_threshold_flags_at_most_the_allowed_share() -> None:
    rng = np.random.default_rng(1)
    x, y = two_gaussians(2000, rng)
    guard = fit_guard(x, y, components=8)
    val, _ = two_gaussians(500, rng)
    for rate in (0.01, 0.02, 0.1):
        scores = guard.scores(val)
        fitted = set_threshold(guard, scores, rate)
        flagged = ~fitted.in_distribution(scores)
        assert flagged.sum() == int(np.floor(rate * len(val)))  # ties aside, exactly the budget
    test, _ = two_gaussians(5000, rng)
    two_percent = set_threshold(guard, guard.scores(val), 0.02)
    assert np.mean(~two_percent.in_distribution(two_percent.scores(test))) < 0.04


def test_fewer_components_and_rejects_bad_input() -> None:
    rng = np.random.default_rng(2)
    x, y = two_gaussians(500, rng)
    assert fit_guard(x, y, components=3).projection.shape == (8, 3)
    with pytest.raises(ValueError, match="several rows per class"):
        fit_guard(x[:3], y[:3])


def test_nan_scores_are_not_in_distribution() -> None:
    guard = Guard(np.zeros(2), np.eye(2), np.zeros((2, 2)), 1.0)
    assert guard.in_distribution(np.array([0.5, 2.0, np.nan])).tolist() == [True, False, False]


def test_the_file_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x, y = two_gaussians(800, rng)
    guard = set_threshold(fit_guard(x, y), fit_guard(x, y).scores(x), 0.02)
    back = load_guard(save_guard(guard, tmp_path / "g.safetensors"), guard.threshold)
    probe = x[:50] * 1.5
    np.testing.assert_allclose(back.scores(probe), guard.scores(probe), rtol=1e-4)
    rates = flag_rates(back, {"train": back.scores(x), "none": np.array([])})
    assert rates["train"]["n"] == 800 and rates["train"]["flagged"] <= 0.03
    assert rates["none"]["flagged"] is None


def test_the_file_is_readable_by_other_users(tmp_path: Path) -> None:
    """A bundle mounted into a container is read by another user id (docs/deployment.md)."""
    rng = np.random.default_rng(4)
    x, y = two_gaussians(200, rng)
    old = os.umask(0o022)
    try:
        path = save_guard(fit_guard(x, y), tmp_path / "g.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def synthetic_xrays(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    sizes = rng.integers(160, 320, (n, 2))
    return [
        synthetic_xray(("NORMAL", "PNEUMONIA")[i % 2], *map(int, sizes[i]), rng) for i in range(n)
    ]


def features(images: list[np.ndarray]) -> np.ndarray:
    bundle = load_bundle(None, "onnx")
    squares = [bundle.contract.square(im) for im in images]
    parts = [
        batch_outputs(bundle.model, bundle.contract, squares[i : i + 32], False, True)[1]
        for i in range(0, len(squares), 32)
    ]
    return np.concatenate([p for p in parts if p is not None])


def test_on_real_features_the_corpus_is_flagged_and_xrays_pass() -> None:
    """Known answer: a guard fitted (in the test) on the shipped network's features of
    synthetic X-rays passes new synthetic X-rays and flags every kind of the corpus."""
    rng = np.random.default_rng(0)
    train, val, test = synthetic_xrays(120, rng), synthetic_xrays(60, rng), synthetic_xrays(60, rng)
    guard = fit_guard(features(train), np.arange(120) % 2, components=64)
    guard = set_threshold(guard, guard.scores(features(val)), 0.02)
    assert np.mean(~guard.in_distribution(guard.scores(features(test)))) <= 0.1
    corpus = ood_corpus(6, test[:6], seed=5)
    kinds = np.array([k for k, _ in corpus])
    flagged = ~guard.in_distribution(guard.scores(features([im for _, im in corpus])))
    for kind in KINDS:
        assert flagged[kinds == kind].mean() >= 0.8, kind


def test_the_shipped_guard_flags_what_the_issue_named(tmp_path: Path) -> None:
    """Blank, noise and cartoon images get in_distribution False from the default model."""
    rng = np.random.default_rng(7)
    paths = []
    for kind in ("blank", "noise", "cartoon", "document"):
        paths.append(str(save_image(MAKERS[kind](rng, 300, 260), tmp_path / f"{kind}.png")))
    bundle = load_bundle(None)
    assert bundle.guard is not None
    rows = predict_paths(bundle, paths, workers=1, show=False)
    assert [r.in_distribution for r in rows] == [False] * len(paths)
    assert all(r.probability is not None and r.ood_score > bundle.guard.threshold for r in rows)  # type: ignore[operator]


def test_thumbnails_average_each_cell_of_any_square() -> None:
    square = np.zeros((1, 40, 40), np.uint8)
    square[0, :20, :20] = 255  # the top-left quarter white
    thumb = thumbnails(square, grid=4).reshape(4, 4)
    np.testing.assert_allclose(thumb[:2, :2], 1.0)
    np.testing.assert_allclose(thumb[2:, :], 0.0)
    assert thumbnails(np.zeros((3, 37, 50)), grid=16).shape == (3, 256)
    with pytest.raises(ValueError, match="at least 16 px"):
        thumbnails(np.zeros((1, 8, 8)))


def layout_guard(threshold: float = 1.0) -> Guard:
    """A guard in 2 features whose layout check flags squares brighter on top than below."""
    top = np.r_[np.ones(128), -np.ones(128)].astype(np.float32)  # rows 0-7 of the 16 x 16
    layout = Layout(np.zeros(256, np.float32), np.ones(256, np.float32), top, 0.0, 10.0)
    return Guard(np.zeros(2, np.float32), np.eye(2, dtype=np.float32), np.zeros((1, 2)), threshold,
                 layout)  # fmt: skip


def test_the_layout_check_flags_what_it_says_and_leaves_the_rest_alone(tmp_path: Path) -> None:
    guard = layout_guard()
    upright = np.zeros((2, 32, 32), np.uint8)
    upright[:, 16:] = 255  # bright below
    flipped = upright[:, ::-1]  # bright on top: logit 128 - 0, over the layout's 10
    features = np.array([[0.5, 0.5], [3.0, 0.0]], np.float32)
    plain = Guard(guard.center, guard.projection, guard.means, guard.threshold).scores(features)
    np.testing.assert_allclose(guard.scores(features, upright), plain)  # distances kept
    flagged = guard.scores(features, flipped)
    assert (flagged > guard.threshold).all() and not guard.in_distribution(flagged).any()
    assert flagged[0] == pytest.approx(guard.threshold + 128 - 10)
    with pytest.raises(ValueError, match="squares too"):
        guard.scores(features)
    back = load_guard(save_guard(guard, tmp_path / "g.safetensors"), 1.0, 10.0)
    np.testing.assert_allclose(back.scores(features, flipped), flagged, rtol=1e-6)
    plain_file = save_guard(Guard(guard.center, guard.projection, guard.means, 1.0), tmp_path / "p")
    with pytest.raises(ValueError, match="does not hold"):
        load_guard(plain_file, 1.0, 10.0)
