"""`pneumonia monitor LOG...`: is the service still seeing what the model was validated on?

Reads the service's prediction log (`pneumonia.monitoring.predlog`: one SQLite file, several
replicas' files, or a shared PostgreSQL database) over a time window and compares it with
the reference the bundle stores (its validation split, recorded when the guard was fitted):
volume per day, the out-of-distribution rate against the guard's validation rate, the
distribution of scores (against validation) and of two input statistics (against the
training images; PSI and Kolmogorov-Smirnov), the predicted positive rate, and the
prevalence estimated by EM prior adjustment (Saerens et al., 2002) with the threshold that
would keep the bundle's target sensitivity under it. Each rule says its value, its limit and
whether it tripped. Writes `monitor.json` and a self-contained `monitor.html`. Needs no
PyTorch.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, select_autoescape
from matplotlib.figure import Figure

from pneumonia.core import __version__
from pneumonia.core.bundle import model_version, read_meta
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.meta import BundleMeta
from pneumonia.evaluation.prior import (
    adjust_posteriors,
    em_prior,
    expected_sensitivity,
    threshold_for_sensitivity,
)
from pneumonia.monitoring.drift import PSI_ALERT, PSI_WATCH, ks, psi, rate_pvalue
from pneumonia.monitoring.log_target import describe, log_url
from pneumonia.monitoring.predlog import Record, read_logs

log = logging.getLogger(__name__)
MIN_ROWS = 30  # fewer predictions than this: distribution rules are not judged
OOD_PVALUE = 0.001  # the OOD rate alert: binomial p-value against the validation rate
PRIOR_SHIFT = 0.15  # the prevalence alert: |estimated - validation| above this
INPUT_STATS = ("brightness", "contrast")  # their reference is the training images
SENSITIVITY_DROP = 0.02  # the sensitivity alert: expected sensitivity this far below reference


def parse_when(text: str | None, now: datetime | None = None) -> str | None:
    """An ISO date or time as the log writes it, or `7d` / `12h` / `30m` ago from `now`."""
    if not text:
        return None
    relative = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if relative:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[relative[2]]
        moment = (now or datetime.now(UTC)) - timedelta(**{unit: int(relative[1])})
        return moment.isoformat(timespec="milliseconds")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PneumoniaError(
            f"{text!r}: not a time; use e.g. 2026-11-01, 2026-11-01T08:00 or 7d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def rule(
    name: str, value: float | None, limit: str, tripped: bool, note: str = ""
) -> dict[str, Any]:
    """One alert rule's outcome."""
    return {"rule": name, "value": value, "limit": limit, "tripped": bool(tripped), "note": note}


def _rows(
    logs: Sequence[str | Path], path: str, meta: BundleMeta, since: str | None, until: str | None
) -> tuple[list[Record], dict[str, int]]:
    """The window's rows by the bundle's model, and the count per model found; `path` names
    the logs in messages (never a password)."""
    try:
        records = read_logs(logs, since, until)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise PneumoniaError(str(exc)) from None
    models = Counter(r.model for r in records)
    version = model_version(meta)
    mine = [r for r in records if r.model == version]
    if not records:
        raise PneumoniaError(
            f"{path}: no predictions between {since or 'the start'} and {until or 'now'}"
        )
    if not mine:
        found = ", ".join(models)
        raise PneumoniaError(
            f"{path}: no predictions by {version} in the window (found: {found}); pass its --bundle"
        )
    return mine, dict(models)


def _volume(rows: list[Record]) -> dict[str, Any]:
    per_day = Counter(r.time[:10] for r in rows)
    return {
        "predictions": len(rows),
        "first": rows[0].time,
        "last": rows[-1].time,
        "per_day": dict(sorted(per_day.items())),
    }


def _guard_section(
    rows: list[Record], meta: BundleMeta
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    judged = [r for r in rows if r.in_distribution is not None]
    if meta.guard is None or not judged:
        return {"active": False}, [rule("ood_rate", None, "-", False, "the bundle has no guard")]
    flagged = sum(not r.in_distribution for r in judged)
    expected = max(float(meta.guard.validation.get("flagged", meta.guard.max_flag_rate)), 1e-3)
    pvalue = rate_pvalue(flagged, len(judged), expected)
    section = {
        "active": True,
        "judged": len(judged),
        "flagged": flagged,
        "rate": flagged / len(judged),
        "validation_rate": expected,
        "pvalue": pvalue,
    }
    limit = f"binomial p < {OOD_PVALUE} above the validation rate {expected:.3f}"
    return section, [rule("ood_rate", flagged / len(judged), limit, pvalue < OOD_PVALUE)]


def _subtype_section(rows: list[Record], meta: BundleMeta) -> dict[str, Any]:
    """The subtype answers of the window (PNEUMONIA answers of a model with the subtype head):
    how many, the share called viral, and the same share among validation's PNEUMONIA
    answers when the bundle records it. Descriptive: no alert rule reads it."""
    named = [r.subtype for r in rows if r.subtype is not None]
    if not named:
        return {"active": False}
    section: dict[str, Any] = {
        "active": True,
        "answered": len(named),
        "viral": named.count("viral"),
        "viral_share": named.count("viral") / len(named),
    }
    three_class = meta.subtype.validation.get("three_class", {}) if meta.subtype else {}
    if matrix := three_class.get("matrix"):  # columns: NORMAL, bacterial, viral answers
        bacterial, viral = (sum(row[k] for row in matrix) for k in (1, 2))
        section["validation_viral_share"] = viral / max(bacterial + viral, 1)
    return section


def _borderline_section(probability: np.ndarray, meta: BundleMeta) -> dict[str, Any]:
    """The window's answers (those the guard did not flag) within the bundle's borderline
    band, beside validation's share. Descriptive: no alert rule reads it."""
    band = meta.borderline
    if band is None or not len(probability):
        return {"active": False}
    low, high = band.limits(meta.threshold.value)
    count = int(band.contains(probability, meta.threshold.value).sum())
    return {
        "active": True,
        "answered": len(probability),
        "borderline": count,
        "share": count / len(probability),
        "low": low,
        "high": high,
        "validation_share": band.validation_share,
    }


def _distribution(
    name: str, reference: list[float], current: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    if not reference:
        return {"name": name}, rule(
            f"{name}_psi", None, "-", False, "no reference in the bundle; run `pneumonia guard`"
        )
    if len(current) < MIN_ROWS:
        return {"name": name}, rule(
            f"{name}_psi", None, f">= {MIN_ROWS} predictions", False, "too few predictions to judge"
        )
    ref = np.asarray(reference)
    value = psi(ref, current)
    statistic, pvalue = ks(ref, current)
    stats = {
        "name": name,
        "psi": value,
        "ks": statistic,
        "ks_pvalue": pvalue,
        "reference_median": float(np.median(ref)),
        "median": float(np.median(current)),
    }
    note = "watch" if PSI_WATCH <= value < PSI_ALERT else ""
    return stats, rule(f"{name}_psi", value, f"PSI >= {PSI_ALERT}", value >= PSI_ALERT, note)


def _prior_section(
    probs: np.ndarray, meta: BundleMeta
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Predicted positive rate, EM prevalence, and the threshold keeping the target sensitivity."""
    threshold = meta.threshold.value
    n_val = meta.validation.get("n") or 0
    ref_prior = (meta.validation.get("positives") or 0) / n_val if n_val else None
    section: dict[str, Any] = {
        "threshold": threshold,
        "positive_rate": float(np.mean(probs >= threshold)) if len(probs) else None,
    }
    ref_probs = np.asarray(meta.reference.get("probability", []))
    if len(ref_probs):
        section["reference_positive_rate"] = float(np.mean(ref_probs >= threshold))
    if ref_prior is None or not 0 < ref_prior < 1 or len(probs) < MIN_ROWS:
        return section, [
            rule(
                "prevalence_shift",
                None,
                f"|change| > {PRIOR_SHIFT}",
                False,
                "too few predictions or no validation record",
            )
        ]
    prior, steps = em_prior(probs, ref_prior)
    weights = adjust_posteriors(probs, ref_prior, prior)
    target = float(
        meta.threshold.detail.get("target_sensitivity")
        or meta.threshold.detail.get("sensitivity")
        or 0.99
    )
    keep, reached = threshold_for_sensitivity(probs, weights, target)
    expected = expected_sensitivity(probs, weights, threshold)
    # the same estimators on the validation reference: their calibration bias cancels
    ref_em, baseline = prior, None
    if len(ref_probs):
        ref_em = em_prior(ref_probs, ref_prior)[0]
        ref_weights = adjust_posteriors(ref_probs, ref_prior, ref_em)
        baseline = expected_sensitivity(ref_probs, ref_weights, threshold)
    section.update(
        validation_prevalence=ref_prior,
        validation_estimated_prevalence=ref_em,
        estimated_prevalence=prior,
        em_iterations=steps,
        target_sensitivity=target,
        expected_sensitivity=expected,
        reference_expected_sensitivity=baseline,
        threshold_for_target=keep,
        expected_sensitivity_at_that=reached,
    )
    change = prior - ref_em
    limit = f"|change| > {PRIOR_SHIFT} from the validation estimate"
    rules = [rule("prevalence_shift", change, limit, abs(change) > PRIOR_SHIFT)]
    if baseline is not None:
        drop = baseline - expected
        note = (
            f"a threshold of {keep:.4g} would keep it at {target}"
            if drop > SENSITIVITY_DROP
            else ""
        )
        rules.append(
            rule(
                "expected_sensitivity_drop",
                drop,
                f"> {SENSITIVITY_DROP} below the validation estimate",
                drop > SENSITIVITY_DROP,
                note,
            )
        )
    return section, rules


def adapt_command(bundle: Path) -> str:
    """The command that adapts `bundle`'s threshold to a site from its unlabelled images."""
    return (
        f"pneumonia threshold {bundle} --unlabelled RECENT_IMAGES/ --out site-bundle/ "
        f"(RECENT_IMAGES: at least 200 of the site's recent X-rays)"
    )


def monitor(
    logs: str | Path | Sequence[str | Path],
    bundle: Path | None,
    out: Path,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """The drift report of the prediction logs `logs` (SQLite paths, PostgreSQL URLs: one
    service's, or its replicas', merged) against the bundle's reference, written into `out`."""
    logs = [logs] if isinstance(logs, str | Path) else list(logs)
    folder, meta = read_meta(bundle)
    start, end = parse_when(since), parse_when(until)
    names = ", ".join(describe(log_url(x)) for x in logs)
    rows, models = _rows(logs, names, meta, start, end)
    inside = [r for r in rows if r.in_distribution is not False]  # flagged images: not scored
    values = {
        "probability": np.array([r.probability for r in inside]),
        "ood_score": np.array([r.ood_score for r in rows if r.ood_score is not None]),
        "brightness": np.array([r.brightness for r in rows]),
        "contrast": np.array([r.contrast for r in rows]),
    }
    guard, rules = _guard_section(rows, meta)
    distributions = []
    for name, window in values.items():
        stats, outcome = _distribution(name, meta.reference.get(name, []), window)
        distributions.append(stats)
        rules.append(outcome)
    prior, prior_rules = _prior_section(values["probability"], meta)
    for outcome in prior_rules:
        if outcome["rule"] == "expected_sensitivity_drop" and outcome["tripped"]:
            outcome["command"] = adapt_command(folder)
            outcome["note"] += f"; adapt the threshold to this site: {outcome['command']}"
    rules += prior_rules
    version, volume = model_version(meta), _volume(rows)
    result: dict[str, Any] = {
        "log": names,
        "bundle": str(folder),
        "model_version": version,
        "window": {"since": start, "until": end},
        "other_models": {m: n for m, n in models.items() if m != version},
        "volume": volume,
        "guard": guard,
        "distributions": distributions,
        "prior": prior,
        "subtype": _subtype_section(rows, meta),
        "borderline": _borderline_section(values["probability"], meta),
        "alerts": [r for r in rules if r["tripped"]],
        "rules": rules,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "monitor.json").write_text(json.dumps(result, indent=2) + "\n")
    figures = _figures(volume["per_day"], values, meta)
    (out / "monitor.html").write_text(_render(result, figures), encoding="utf-8")
    return result


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(
    per_day: dict[str, int], values: dict[str, np.ndarray], meta: BundleMeta
) -> dict[str, str]:
    """Volume per day, and each distribution against its reference, as data URIs."""
    fig = Figure(figsize=(6, 2.6), layout="constrained")
    ax = fig.subplots()
    ax.bar(list(per_day), list(per_day.values()), color="#2f6fb0")
    ax.set_ylabel("predictions")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    out = {"volume": _png(fig)}
    panels = [
        ("probability", "P(PNEUMONIA), in-distribution images", meta.threshold.value),
        ("ood_score", "guard score", meta.guard.threshold if meta.guard else None),
        ("brightness", "input mean (0-1)", None),
        ("contrast", "input standard deviation", None),
    ]
    fig = Figure(figsize=(10, 5.6), layout="constrained")
    for ax, (name, title, line) in zip(fig.subplots(2, 2).ravel(), panels, strict=True):
        reference, window = np.asarray(meta.reference.get(name, [])), values[name]
        both = np.concatenate([reference, window]) if len(window) else reference
        bins = np.linspace(both.min(), both.max(), 31) if len(both) and np.ptp(both) > 0 else 30
        if len(reference):
            ax.hist(
                reference,
                bins=bins,
                density=True,
                alpha=0.5,
                label=f"reference ({'training' if name in INPUT_STATS else 'validation'})",
                color="#8aa0b4",
            )
        if len(window):
            ax.hist(
                window, bins=bins, density=True, alpha=0.6, label="this window", color="#e07b00"
            )
        if line is not None:
            ax.axvline(line, color="#b3261e", linestyle="--", label="threshold")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    out["distributions"] = _png(fig)
    return out


def _render(result: dict[str, Any], figures: dict[str, str]) -> str:
    env = Environment(autoescape=select_autoescape(["html", "j2"]))
    template = env.from_string(
        files("pneumonia").joinpath("templates/monitor.html.j2").read_text(encoding="utf-8")
    )
    return template.render(r=result, figures=figures, version=__version__)
