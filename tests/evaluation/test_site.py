"""Site adaptation without labels: known prevalences and thresholds recovered, refusals clear."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import norm
from typer.testing import CliRunner

from conftest import TinyRun
from pneumonia.cli import app
from pneumonia.core.errors import PneumoniaError
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.evaluation.site import check_batch, fit_site

MU = 1.5  # class-conditional scores: N(+MU, 1) for PNEUMONIA, N(-MU, 1) for NORMAL


def calibrated_site(n: int, prevalence: float, validation_prior: float, seed: int = 0):
    """(labels, scores, posteriors calibrated under `validation_prior`) of a site whose
    prevalence is `prevalence`: exactly the posteriors a calibrated model would give."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < prevalence
    x = rng.normal(np.where(labels, MU, -MU), 1.0)
    posterior = expit(2 * MU * x + logit(validation_prior))  # Bayes, under the old prior
    return labels, x, posterior


@pytest.mark.parametrize("prevalence", [0.3, 0.5, 0.62])
def test_fit_site_recovers_a_known_prevalence_and_threshold(prevalence: float) -> None:
    old, target = 0.74, 0.98
    labels, _, probs = calibrated_site(6000, prevalence, old, seed=int(100 * prevalence))
    fit = fit_site(probs, old, target, n_boot=100)
    assert fit.prevalence == pytest.approx(prevalence, abs=0.02)
    low, high = fit.prevalence_interval
    assert low < prevalence < high and high - low < 0.06
    # the true threshold: the score that keeps `target` of the positives, as a posterior
    truth = expit(2 * MU * (MU - norm.ppf(target)) + logit(old))
    assert fit.threshold == pytest.approx(truth, rel=0.25)
    assert fit.threshold_interval[0] <= truth <= fit.threshold_interval[1]
    sensitivity = float((probs[labels] >= fit.threshold).mean())
    assert sensitivity == pytest.approx(target, abs=0.01)
    assert fit.expected_sensitivity >= target


def test_the_aim_corrects_the_estimators_bias_on_validation(tiny_run: TinyRun) -> None:
    from pneumonia.evaluation.site import anchored_aim
    from pneumonia.inference.loading import load_bundle

    bundle = load_bundle(tiny_run.bundle)
    n = bundle.meta.validation["n"]
    positives = bundle.meta.validation["positives"]
    # posteriors of 0 or 1 (near): every soft positive sits above a threshold of 0.5, so the
    # estimator says sensitivity 1.0 where the rule was fitted for 0.95: a bias of +0.05
    bundle.meta.reference["probability"] = [1e-9] * (n - positives) + [1 - 1e-9] * positives
    bundle.meta.threshold.value = 0.5
    bundle.meta.threshold.detail["target_sensitivity"] = 0.95
    aim, bias, estimate = anchored_aim(bundle, 0.9)
    assert bias == pytest.approx(0.05, abs=1e-6) and aim == pytest.approx(0.95, abs=1e-6)
    assert estimate == pytest.approx(positives / n, abs=1e-3)  # hard posteriors: exact
    assert anchored_aim(bundle, 0.99)[0] == pytest.approx(1 - 1e-4)  # never aims at 1
    bundle.meta.reference.clear()
    assert anchored_aim(bundle, 0.9) == (0.9, 0.0, None)  # no reference: no correction


def test_a_lower_prevalence_lowers_nothing_it_should_not() -> None:
    """With the same scores per class, the threshold for a sensitivity target does not depend
    on the prevalence; the estimate follows the truth, not the validation prior."""
    fits = [fit_site(calibrated_site(8000, p, 0.74, 7)[2], 0.74, 0.99, 0) for p in (0.3, 0.62)]
    assert fits[0].prevalence < 0.35 and fits[1].prevalence > 0.57
    assert fits[0].threshold == pytest.approx(fits[1].threshold, rel=0.3)


def test_batches_too_small_or_too_strange_are_refused() -> None:
    ok = {"images": 300, "unreadable": 2, "flagged": 10}
    check_batch("site/", ok, 288, 200)
    with pytest.raises(PneumoniaError, match=r"150 usable images .* at least 200"):
        check_batch("site/", {"images": 160, "unreadable": 5, "flagged": 5}, 150, 200)
    with pytest.raises(
        PneumoniaError, match=r"guard flags 60 of 298 readable images \(20%, limit 10%\)"
    ):
        check_batch("site/", {"images": 300, "unreadable": 2, "flagged": 60}, 238, 200)
    with pytest.raises(PneumoniaError, match="validation prevalence"):
        fit_site(np.full(10, 0.5), 1.0, 0.99)


def _site_folder(folder: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(n):
        label = "PNEUMONIA" if rng.random() < 0.4 else "NORMAL"
        save_image(synthetic_xray(label, 40, 40 + (i % 9), rng), folder / f"img{i:03d}.png")
    return folder


def test_threshold_unlabelled_writes_a_site_bundle(tiny_run: TinyRun, tmp_path: Path) -> None:
    site = _site_folder(tmp_path / "site", 230)
    (site / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "site-bundle"
    args = ["threshold", str(tiny_run.bundle), "--unlabelled", str(site), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert "prevalence of PNEUMONIA" in result.output and "1 unreadable" in result.output
    assert "broken.png" in result.output  # the unreadable file is named
    meta = json.loads((out / "model.json").read_text())
    t = meta["threshold"]
    assert t["rule"] == "site_unlabelled" and t["detail"]["images"] == 231
    assert t["detail"]["previous"]["value"] == pytest.approx(
        json.loads((tiny_run.bundle / "model.json").read_text())["threshold"]["value"]
    )
    d = t["detail"]
    assert d["aim"] == pytest.approx(min(d["target_sensitivity"] + max(d["estimator_bias"], 0),
                                         1 - 1e-4))  # fmt: skip
    low, high = t["detail"]["prevalence_interval"]
    assert low <= t["detail"]["prevalence"] <= high and "label shift" in t["detail"]["assumptions"]
    curve = t["detail"]["curve"]
    assert [row["target"] for row in curve] == sorted(
        {0.95, 0.97, 0.98, 0.99, d["target_sensitivity"]}
    )
    for row in curve:  # a specificity is claimed only where the batch bounds it within 0.25
        assert (row["specificity"] is None) is (not row["identified"])
    assert "NORMAL films may differ" in d["curve_assumptions"]  # validation's labels recorded
    stored = next(row for row in curve if row["target"] == d["target_sensitivity"])
    assert stored["threshold"] == pytest.approx(t["value"])  # the same estimate as the fit's
    assert "expected specificity" in result.output and "stored" in result.output
    card = (out / "MODEL_CARD.md").read_text()
    assert "unlabelled" in card and "label shift" in card and "expected specificity" in card
    again = CliRunner().invoke(app, [*args])
    assert again.exit_code == 1 and "already exists" in again.output  # nothing overwritten


def test_threshold_unlabelled_refuses_too_few_images(tiny_run: TinyRun, tmp_path: Path) -> None:
    site = _site_folder(tmp_path / "site", 20)
    out = tmp_path / "site-bundle"
    args = ["threshold", str(tiny_run.bundle), "--unlabelled", str(site), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "at least 200" in result.output
    assert "Traceback" not in result.output and not out.exists()
    both = CliRunner().invoke(app, [*args, "--data", str(site)])
    assert both.exit_code != 0 and "one" in both.output
    no_out = CliRunner().invoke(app, args[:4])
    assert no_out.exit_code != 0 and "--out" in no_out.output


def test_threshold_without_a_bundle_adapts_the_shipped_one_and_never_rewrites_it(
    tmp_path: Path,
) -> None:
    site = _site_folder(tmp_path / "site", 20)
    args = ["threshold", "--unlabelled", str(site), "--out", str(tmp_path / "site-bundle")]
    result = CliRunner().invoke(app, args)
    # the shipped model read them, and its guard knows drawn X-rays are not real ones
    assert result.exit_code == 1 and "the guard flags 20 of 20" in result.output
    in_place = CliRunner().invoke(app, ["threshold", "--data", str(site), "--in-place"])
    assert in_place.exit_code == 2 and "the shipped one is not" in in_place.output


def test_threshold_audit_leaves_flagged_validation_images_out(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    from pneumonia.data.split import read_manifest
    from pneumonia.evaluation.audit import write_audit

    rows = read_manifest(tiny_run.cfg.data.manifest)
    val = [r for r in rows if r.split == "val"]
    records = [
        {"rank": i + 1, "path": r.path, "sha256": r.sha256, "split": r.split, "patient": r.patient,
         "label": r.label, "issue": r in val[:2], "self_confidence": 0.5, "p_pneumonia": 0.5,
         "suggested": r.label}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    summary = {"images": len(rows), "issues": 2, "counts": {}, "out_of_fold_roc_auc": 0.9,
               "method": "by hand"}  # fmt: skip
    table = write_audit(records, summary, tmp_path / "audit")
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_run.bundle, bundle)
    manifest = str(tiny_run.cfg.data.manifest)
    result = CliRunner().invoke(
        app,
        [
            "threshold",
            str(bundle),
            "--data",
            manifest,
            "--audit",
            str(table),
            "--in-place",
            "--rule",
            "youden",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["threshold"]["detail"]["left_out"] == 2
    left = meta["data"]["left_out"]["operating"]
    assert left["images"] == 2 and sorted(left["paths"]) == sorted(r.path for r in val[:2])
    assert meta["validation"]["n"] == len(val)
