"""`pneumonia pairs`: does an original get the answer its copy gets?

An originals folder and a copies folder are matched by file name (the Kaggle copies keep their
originals' names). Each original is scored as it is and as the other files a clinic holds
(`pneumonia.data.renderings`: DICOM, 16-bit PNG, downscaled, recompressed), each through the
input door and the bundle's own contract, exactly as a user's file; each copy is scored once.
Per rendering, against the copies: mean, 95th percentile and largest |dp|, label flips at the
stored threshold (which images), guard verdict changes, the guard's flag rate on both, and
sensitivity and specificity at the stored threshold on both; and the borderline band: how
far from the threshold (in calibrated logits) an answer must be for its file not to decide its
label. Writes `pairs.json` and `pairs.csv` (one row per pair and rendering).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats.mstats import hdquantiles

from pneumonia.core.errors import DataError, ImageError
from pneumonia.core.meta import MIN_BAND_PAIRS, Borderline
from pneumonia.core.preprocess import Preprocessing
from pneumonia.core.progress import parallel_map
from pneumonia.data.discover import discover
from pneumonia.data.image_io import decode_image, read_image
from pneumonia.data.renderings import RENDERINGS, chosen, render
from pneumonia.evaluation.calibration import logit
from pneumonia.inference.loading import Bundle
from pneumonia.inference.predictions import guard_scores, network_scores, to_probability

log = logging.getLogger(__name__)
COPY = "copy"
CHUNK = 128  # pairs decoded and rendered at a time (bounds memory)
BAND_QUANTILE = 0.95  # share of pairs whose every rendering moved less than the band
CLIP = 1e-12  # probabilities are clipped to [CLIP, 1 - CLIP] before their logits are taken


@dataclass(frozen=True)
class Pair:
    """One image twice: the original file and its copy, with its label and patient."""

    name: str
    original: str
    copy: str
    label: str
    patient: str


def find_pairs(originals: Path, copies: Path) -> tuple[list[Pair], list[str]]:
    """Originals matched to copies by file name: (pairs, originals without exactly one copy).
    Labels and patients are read from the originals' folders and names."""
    found = discover(originals).samples
    if not found:
        raise DataError(f"{originals}: no labelled images (expected NORMAL/ and PNEUMONIA/)")
    by_name: dict[str, list[str]] = {}
    for sample in discover(copies).samples:
        by_name.setdefault(Path(sample.path).name, []).append(sample.path)
    pairs, unmatched = [], []
    for s in sorted(found, key=lambda s: s.path):
        name = Path(s.path).name
        match = by_name.get(name, [])
        if len(match) == 1:
            pairs.append(Pair(name, s.path, match[0], s.label, s.patient))
        else:
            unmatched.append(f"{s.path}: {len(match)} copies named {name}")
    if not pairs:
        raise DataError(f"no original in {originals} has a copy of the same name in {copies}")
    return pairs, unmatched


def pair_squares(
    job: tuple[str, str, tuple[str, ...], Preprocessing],
) -> dict[str, np.ndarray | str] | str:
    """(original, copy, renderings, contract) -> the contract square of the copy and of each
    rendering (or the reason one could not be read); the reason when either file cannot be."""
    original, copy, names, contract = job
    try:
        data = Path(original).read_bytes()
        pixels = decode_image(data, original).pixels
        out: dict[str, np.ndarray | str] = {COPY: contract.square(read_image(copy)[1].pixels)}
    except (ImageError, OSError) as exc:
        return getattr(exc, "reason", str(exc))
    for name in names:
        try:
            decoded = decode_image(render(name, data, pixels), f"{original} ({name})")
            out[name] = contract.square(decoded.pixels)
        except ImageError as exc:
            out[name] = exc.reason
    return out


def _scores(bundle: Bundle, squares: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated P(PNEUMONIA), guard scores or NaN) of contract squares."""
    found, feats = network_scores(
        bundle.model, bundle.contract, squares, 32, features=bundle.guard is not None
    )
    return to_probability(found, bundle.temperature), guard_scores(bundle, feats, squares)


def _rates(labels: np.ndarray, positive: np.ndarray) -> dict[str, float | None]:
    pos, neg = labels == 1, labels == 0
    return {
        "sensitivity": float(positive[pos].mean()) if pos.any() else None,
        "specificity": float((~positive[neg]).mean()) if neg.any() else None,
    }


def logit_changes(p_copy: np.ndarray, p_view: np.ndarray) -> np.ndarray:
    """Each pair's |logit change| between its copy and one rendering."""
    return np.abs(logit(p_view, CLIP) - logit(p_copy, CLIP))


def agreement(
    names: Sequence[str],
    labels: np.ndarray,
    copy: tuple[np.ndarray, np.ndarray],
    view: tuple[np.ndarray, np.ndarray],
    threshold: float,
    guard_threshold: float | None,
) -> dict[str, Any]:
    """How a rendering's answers (probabilities, guard scores) differ from the copies' on the
    same images: |dp| summary, label flips at `threshold` (with the names), guard verdict
    changes and flag rates (None without a guard), sens/spec at `threshold` on both; and the
    mean |logit change|, which does not depend on where the probabilities sit."""
    (p_copy, ood_copy), (p_view, ood_view) = copy, view
    dp = np.abs(p_view - p_copy)
    flipped = (p_view >= threshold) != (p_copy >= threshold)
    row: dict[str, Any] = {
        "n": len(dp),
        "mean_dp": float(dp.mean()),
        "mean_dlogit": float(logit_changes(p_copy, p_view).mean()),
        "p95_dp": float(np.quantile(dp, 0.95)),
        "max_dp": float(dp.max()),
        "flips": int(flipped.sum()),
        "flipped": [names[int(i)] for i in np.flatnonzero(flipped)],
        "rendering": _rates(labels, p_view >= threshold),
        "copy": _rates(labels, p_copy >= threshold),
    }
    if guard_threshold is None:
        return {**row, "guard_changes": None, "flagged": None, "flagged_copy": None}
    ok_copy, ok_view = ood_copy <= guard_threshold, ood_view <= guard_threshold
    return {
        **row,
        "guard_changes": int((ok_copy != ok_view).sum()),
        "flagged": int((~ok_view).sum()),
        "flagged_copy": int((~ok_copy).sum()),
        "flagged_names": [names[int(i)] for i in np.flatnonzero(~ok_view)],
    }


def _unreadable(got: dict[str, np.ndarray | str] | str) -> str | None:
    """Why a pair cannot be scored (a file, or one of its renderings), or None."""
    if isinstance(got, str):
        return got
    return next((f"{k}: {v}" for k, v in got.items() if isinstance(v, str)), None)


def score_pairs(
    bundle: Bundle,
    pairs: list[Pair],
    renderings: Sequence[str] | None = None,
    workers: int | None = None,
    show: bool = True,
) -> dict[str, Any]:
    """Every pair's copy and renderings scored by `bundle`; per rendering, `agreement` with the
    copies over the pairs where both could be read, and the per-pair rows."""
    names = chosen(renderings)
    c: Preprocessing = bundle.contract
    kept: list[Pair] = []
    unreadable: list[dict[str, str]] = []
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {v: [] for v in (COPY, *names)}
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        jobs = [(p.original, p.copy, names, c) for p in chunk]
        loaded = parallel_map(pair_squares, jobs, "rendering pairs", workers, show)
        good: list[dict[str, np.ndarray]] = []
        for pair, got in zip(chunk, loaded, strict=True):
            reason = _unreadable(got)
            if reason is None:
                good.append({k: v for k, v in got.items() if not isinstance(v, str)})  # type: ignore[union-attr]
                kept.append(pair)
            else:
                unreadable.append({"path": pair.original, "reason": reason})
        for view, found in parts.items():
            if good:
                found.append(_scores(bundle, [g[view] for g in good]))
    for u in unreadable:
        log.warning("%s: %s (left out)", u["path"], u["reason"])
    if not kept:
        raise DataError(f"none of the {len(pairs)} pairs could be read")
    merged = {
        v: (np.concatenate([p for p, _ in s]), np.concatenate([o for _, o in s]))
        for v, s in parts.items()
    }
    labels = np.array([p.label == "PNEUMONIA" for p in kept], dtype=int)
    guard_t = bundle.guard.threshold if bundle.guard is not None else None
    pair_names = [p.name for p in kept]
    per_view = {
        n: agreement(pair_names, labels, merged[COPY], merged[n], bundle.threshold, guard_t)
        for n in names
    }
    return {
        "pairs": kept,
        "scores": merged,
        "labels": labels,
        "agreement": per_view,
        "unreadable": unreadable,
    }


def largest_changes(p_copy: np.ndarray, p_views: Sequence[np.ndarray]) -> np.ndarray:
    """Each pair's largest |logit change| between its copy and any of its renderings."""
    return np.asarray(np.max([logit_changes(p_copy, p) for p in p_views], axis=0))


def against_band(
    p_copy: np.ndarray, p_views: Sequence[np.ndarray], band: Borderline, threshold: float
) -> dict[str, Any]:
    """These pairs against a band a bundle already records: how many moved less than it under
    every rendering, and of the renderings whose label changed, how many have both answers
    (copy and rendering) within it."""
    covered = largest_changes(p_copy, p_views) < band.logit
    flips = inside = 0
    for p in p_views:
        flipped = (p >= threshold) != (p_copy >= threshold)
        both = band.contains(p, threshold) & band.contains(p_copy, threshold)
        flips, inside = flips + int(flipped.sum()), inside + int((flipped & both).sum())
    return {
        "logit": band.logit,
        "pairs": len(covered),
        "covered": int(covered.sum()),
        "flips": flips,
        "flips_within": inside,
    }


def rendering_band(
    p_copy: np.ndarray, p_views: Sequence[np.ndarray], quantile: float = BAND_QUANTILE
) -> dict[str, Any]:
    """The borderline band's half-width: the Harrell-Davis `quantile`, over the pairs, of each
    pair's largest |logit change| between its copy and any of its renderings, and how many
    pairs it rests on (those whose largest change is at or above it)."""
    change = largest_changes(p_copy, p_views)
    if len(change) < 2:
        raise DataError("the borderline band needs at least two pairs")
    width = float(np.asarray(hdquantiles(change, prob=[quantile]))[0])
    return {
        "logit": width,
        "quantile": quantile,
        "pairs": len(change),
        "at_or_above": int((change >= width).sum()),
    }


def pairs_report(
    bundle: Bundle,
    originals: Path,
    copies: Path,
    out: Path,
    renderings: Sequence[str] | None = None,
    only: set[str] | None = None,
    workers: int | None = None,
    show: bool = True,
) -> dict[str, Any]:
    """`pneumonia pairs`: find the pairs (those named in `only`, if given), score them, write
    `pairs.json` and `pairs.csv` into `out` and return the summary."""
    pairs, unmatched = find_pairs(originals, copies)
    if only is not None:
        pairs = [p for p in pairs if p.name in only]
        if not pairs:
            raise DataError(f"none of the {len(only)} images asked for is among the pairs")
    scored = score_pairs(bundle, pairs, renderings, workers, show)
    p_copy = scored["scores"][COPY][0]
    p_views = [scored["scores"][n][0] for n in scored["agreement"]]
    result = {
        "bundle": str(bundle.path),
        "backend": bundle.backend,
        "contract": bundle.contract.describe(),
        "threshold": bundle.threshold,
        "guard_threshold": bundle.guard.threshold if bundle.guard is not None else None,
        "originals": str(originals),
        "copies": str(copies),
        "pairs": len(scored["pairs"]),
        "patients": len({p.patient for p in scored["pairs"]}),
        "positives": int(scored["labels"].sum()),
        "negatives": int(len(scored["labels"]) - scored["labels"].sum()),
        "renderings": {
            n: {"description": RENDERINGS[n].description, **a}
            for n, a in scored["agreement"].items()
        },
        "borderline": rendering_band(p_copy, p_views),
        "recorded_band": None
        if bundle.meta.borderline is None
        else against_band(p_copy, p_views, bundle.meta.borderline, bundle.threshold),
        "unmatched": unmatched,
        "unreadable": scored["unreadable"],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "pairs.json").write_text(json.dumps(result, indent=2) + "\n")
    _write_rows(scored, out / "pairs.csv")
    return result


def _write_rows(scored: dict[str, Any], path: Path) -> None:
    p_copy, ood_copy = scored["scores"][COPY]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "name",
                "label",
                "patient",
                "rendering",
                "p_copy",
                "p_rendering",
                "ood_copy",
                "ood_rendering",
            ]
        )
        for view in scored["agreement"]:
            p_view, ood_view = scored["scores"][view]
            for i, pair in enumerate(scored["pairs"]):
                writer.writerow(
                    [pair.name, pair.label, pair.patient, view]
                    + [f"{v:.6g}" for v in (p_copy[i], p_view[i], ood_copy[i], ood_view[i])]
                )


def band_left_out(result: dict[str, Any], min_pairs: int = MIN_BAND_PAIRS) -> str | None:
    """Why a pairs result's band would not be kept in a bundle; None when it would be."""
    band = result["borderline"]
    if band["logit"] <= 0:
        return "no rendering moved any answer, so no answer is borderline"
    if band["pairs"] < min_pairs:
        return (
            f"{band['pairs']} pairs are fewer than {min_pairs}: its {band['quantile']:.2f} "
            f"quantile rests on {band['at_or_above']} images (--band-min-pairs to accept fewer)"
        )
    return None


def record_pairs(
    folder: Path,
    result: dict[str, Any],
    which: str,
    command: str,
    min_band_pairs: int = MIN_BAND_PAIRS,
) -> Path:
    """Keep a pairs result in a bundle's `model.json` (`validation.real_files`, which its card
    shows): per rendering the |dp| summary, flips, guard flags and rates, and what was run;
    and its band as the bundle's `borderline` (unless `band_left_out` says why not), with the
    share of the bundle's validation answers (its `reference`) that fall within it."""
    from pneumonia.core.bundle import read_meta, write_meta

    folder, meta = read_meta(folder)
    keep = ("mean_dp", "p95_dp", "max_dp", "flips", "flagged", "flagged_copy", "rendering", "copy")
    record = {
        "pairs": result["pairs"],
        "patients": result["patients"],
        "positives": result["positives"],
        "negatives": result["negatives"],
        "which": which,
        "command": command,
        "renderings": {n: {k: a[k] for k in keep} for n, a in result["renderings"].items()},
    }
    validation = {**meta.validation, "real_files": record}
    band = result["borderline"]
    if band_left_out(result, min_band_pairs) is not None:
        return write_meta(meta.model_copy(update={"validation": validation}), folder)
    borderline = Borderline(
        logit=band["logit"],
        quantile=band["quantile"],
        pairs=band["pairs"],
        renderings=list(result["renderings"]),
        measured_on=f"{which}: {command}",
    )
    reference = np.asarray(meta.reference.get("probability", []), dtype=np.float64)
    if len(reference):
        share = float(borderline.contains(reference, meta.threshold.value).mean())
        borderline = borderline.model_copy(update={"validation_share": share})
    update = {"validation": validation, "borderline": borderline}
    return write_meta(meta.model_copy(update=update), folder)
