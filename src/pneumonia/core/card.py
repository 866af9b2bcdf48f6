"""Model cards written from a bundle's own metadata, so the card never disagrees with it."""

from __future__ import annotations

from typing import Any

from pneumonia.core.meta import BundleMeta

INTENDED_USE = (
    "Research and teaching: comparing methods, studying failure modes, building tools. "
    "It screens a frontal pediatric chest X-ray for signs of pneumonia and returns a "
    "probability and a label at a stored threshold."
)
LIMITS = [
    "Not a medical device and not validated for clinical use; never use it to decide care.",
    "Trained on one centre's data (Guangzhou Women and Children's Medical Center, children "
    "aged 1 to 5, Kermany et al. 2018). Other hospitals, scanners, adults, lateral views or "
    "portable films may behave differently; check on your own data before trusting it.",
    "The screening labels are NORMAL vs PNEUMONIA; other findings are out of scope.",
    "The guard flags non-films but also some very sick children's films, and never saw an "
    "adult's: check the age yourself (the DICOM node refuses by the header's age). Cut a "
    "black canvas off first: on one, 23-29 of 100 films changed label (docs/robustness.md).",
    "Validation metrics come from a patient-grouped split of the training images; they are "
    "optimistic for data from elsewhere. The official test split's NORMAL images are known "
    "to differ from the training ones.",
]


RESIZE_TEXT = {
    "stretch": "any input squashed to the square, as the training copies were made from their "
    "wider originals",
    "pad": "aspect kept, letterboxed on black",
    "crop": "aspect kept, the long side cut",
}


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _metrics_rows(validation: dict[str, Any]) -> list[str]:
    keys = ["roc_auc", "pr_auc", "sensitivity", "specificity", "precision", "npv"]
    keys += ["accuracy", "balanced_accuracy", "f1"]
    rows = ["| metric | value |", "| --- | ---: |"]
    rows += [f"| {k} | {_fmt(validation.get(k))} |" for k in keys if k in validation]
    return rows


def _rule(meta: BundleMeta) -> str:
    t = meta.threshold
    parts = [f"rule {t.rule}"]
    if "target_sensitivity" in t.detail:
        parts.append(f"target sensitivity {t.detail['target_sensitivity']}")
    if t.detail.get("smooth"):
        parts.append("by the Harrell-Davis quantile of the positives' scores")
    if "cost_ratio" in t.detail:
        parts.append(f"cost ratio {t.detail['cost_ratio']}")
    if "data" in t.detail:
        parts.append(f"chosen on {t.detail['data']}")
    if t.detail.get("left_out"):
        parts.append(f"without {t.detail['left_out']} images a label audit flagged")
    if "previous" in t.detail and t.rule != "site_unlabelled":
        parts.append(f"re-fitted after training, was {t.detail['previous']['value']:.4g}")
    if t.detail.get("tta"):
        parts.append("on test-time-augmented scores: apply with --tta")
    return ", ".join(parts)


def _site(meta: BundleMeta) -> list[str]:
    """What a site bundle's threshold rests on (`pneumonia threshold --unlabelled`)."""
    d = meta.threshold.detail
    if meta.threshold.rule != "site_unlabelled":
        return []
    low, high = d["prevalence_interval"]
    t_low, t_high = d["threshold_interval"]
    return [
        f"- Site adaptation without labels: {d['usable']} usable unlabelled images of "
        f"{d['data']} ({d['unreadable']} unreadable, {d['flagged']} flagged by the guard); "
        f"estimated prevalence {d['prevalence']:.3f} (95% bootstrap {low:.3f}-{high:.3f}; "
        f"validation {d['validation_prevalence']:.3f}, estimated there at "
        f"{_fmt(d.get('validation_estimated_prevalence'))}); threshold "
        f"{meta.threshold.value:.4g} "
        f"(95% bootstrap {t_low:.4g}-{t_high:.4g}), was {d['previous']['value']:.4g}; it aims the "
        f"site's expected sensitivity at {d['aim']:.4f}, the target plus the estimator's bias "
        f"on validation ({d['estimator_bias']:+.4f}).",
        f"- It assumes {d['assumptions']}; the curve's rates assume "
        f"{d.get('curve_assumptions', 'the same')}. Check it on labelled cases of the site when "
        "you have them (`pneumonia threshold BUNDLE --data LABELLED`).",
        *_curve(d.get("curve", [])),
    ]


def curve_cell(row: dict[str, Any], key: str, digits: int) -> str:
    """A site curve row's rate and interval, or "cannot tell" and its bounds (none kept)."""
    if row.get(key) is None:
        low, high = row.get(f"{key}_bounds") or (0.0, 1.0)
        return f"cannot tell ({low:.{digits}f}-{high:.{digits}f})"
    low, high = row[f"{key}_interval"]
    return f"{row[key]:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _curve(curve: list[dict[str, Any]]) -> list[str]:
    """The site's estimated operating curve as a markdown table (none recorded: nothing)."""
    if not curve:
        return []
    head = "| target | threshold | expected sensitivity | expected specificity |\n|---|---|---|---|"
    lines = ["", "Estimated for the site without labels (95% intervals):", "", head]
    for row in curve:
        rates = " | ".join(curve_cell(row, k, 3) for k in ("sensitivity", "specificity"))
        lines.append(f"| {row['target']:.2f} | {curve_cell(row, 'threshold', 4)} | {rates} |")
    return lines


def _left_out(meta: BundleMeta) -> list[str]:
    """The images a label audit kept out of the fits."""
    record = meta.data.get("left_out", {})
    names = {"operating": "the calibration and threshold fit", "training": "training"}
    return [
        f"- Left out of {names[fit]}: {r['images']} of {r['of']} {r['split']} images "
        f"({', '.join(f'{n} {k}' for k, n in r['by_label'].items())}), {r['why']} "
        f"(`{r['file']}`)."
        for fit, r in record.items()
        if fit in names
    ]


def _exports(meta: BundleMeta) -> list[str]:
    onnx, int8 = meta.exports.get("onnx"), meta.exports.get("int8")
    lines = []
    if onnx:
        lines.append(
            f"- ONNX: `{onnx['file']}` (opset {onnx['opset']}, dynamic batch); largest "
            f"probability difference from PyTorch {onnx['max_abs_diff_probability']:.1e} on "
            f"{onnx['images']} check images."
        )
    if int8:
        kept = f"kept as `{int8['file']}`" if int8["passed"] else "not kept"
        lines.append(f"- int8 (ONNX Runtime static quantization): {kept}. {int8_summary(int8)}")
    return lines


def int8_summary(record: dict[str, Any]) -> str:
    """One sentence of an int8 attempt's parity numbers (`model.json` `exports.int8`)."""
    r, text = record, f"On {record['judged_on']}: "
    if r.get("label_changes") is not None:  # the per-image rule's figures
        text += ("labels changed on {label_changes} clean and {shifted_label_changes} shifted "
                 "views, borderline verdicts on {borderline_changes} and "
                 "{shifted_borderline_changes}, largest |P change| {max_abs_diff_probability:.3f} "
                 "clean and {shifted_max_abs_diff_probability:.3f} shifted (mean "
                 "{mean_abs_diff_probability:.4f}); ").format(**r)  # fmt: skip
    text += f"ROC-AUC {r['roc_auc_float']:.4f} (float) vs {r['roc_auc_int8']:.4f}, same labels "
    text += f"{r['same_labels']:.4f}"
    if r.get("shifted_same_labels") is not None:
        text += (f", shifted {r['shifted_same_labels']:.4f} (largest ROC-AUC change "
                 f"{r['worst_shift_auc_change']:.4f}, {r['worst_shift']})")  # fmt: skip
    if r.get("same_guard_verdict") is not None:
        text += f", same guard verdicts {r['same_guard_verdict']:.4f}"
    return f"{text}; rule {r['rule']}."


def _guard(meta: BundleMeta) -> str:
    g = meta.guard
    if g is None:
        return (
            "- Out-of-distribution guard: none; nothing says whether an input is a chest "
            "X-ray at all (`pneumonia guard BUNDLE` adds one)."
        )
    v = g.validation
    corpus = ", ".join(f"{k} {100 * r:.0f}%" for k, r in v.get("corpus_flagged", {}).items())
    again = ", rendered again" if g.fitted_on.get("rendered_views") else ""
    return (
        f"- Out-of-distribution guard: {g.method} on {g.features} pooled features "
        f"({g.components} components), fitted on {g.fitted_on.get('train_images')} training "
        f"images and {g.fitted_on.get('augmented_views')} augmented views of each{again}; "
        f"threshold {g.threshold:.4g} flags {100 * v.get('flagged', 0):.1f}% of {v.get('images')} "
        f"validation X-rays (budget {100 * g.max_flag_rate:.0f}%). Generated images "
        f"flagged: {corpus}.{_layout(g.layout)}"
    )


def _layout(layout: dict[str, Any] | None) -> str:
    """The guard's layout check, as the card says it (nothing without one)."""
    if not layout:
        return ""
    return (
        " With it, a layout check on the pixels (a whole frontal X-ray the right way round, not "
        "its negative or a small piece of it; negatives and pieces are kinds it was fitted to "
        f"refuse) flags {100 * layout['validation_flagged']:.1f}% of validation of its own."
    )


def _render(p: Any) -> str:
    """The contract's render step, as the card says it (nothing without one)."""
    if p.render is None:
        return ""
    r = p.render
    blur = f", then a Gaussian blur of sigma {r.blur:g} px" if r.blur > 0 else ""
    return (
        f"; every image first rendered as the training copies were made ({r.side}x{r.side}, "
        f"JPEG quality {r.quality}{blur}), so that an original reaches the network as its copy "
        "does"
    )


def _recontracted(training: dict[str, Any]) -> list[str]:
    """Where a bundle's contract came from when `pneumonia recontract` changed it."""
    r = training.get("recontracted")
    if not r:
        return []
    before = r.get("previous_preprocessing", {})
    return [
        f"- The contract was `resize {before.get('resize')}` without a render step when the "
        f"network was trained; changed on the same weights, with calibration, threshold, "
        f"guard and int8 model fitted or judged again, by `{r.get('command')}`."
    ]


def _members(meta: BundleMeta) -> list[str]:
    members = meta.architecture.members or []
    if not members:
        return []
    return [f"- Ensemble of {len(members)} ({meta.architecture.combine}):"] + [
        f"  - Member {i}: `{m.name}` at {m.preprocessing.image_size} px, temperature "
        f"{m.temperature:.3f}, from `{m.source or '?'}` (weights sha256 "
        f"`{m.source_sha256[:12] or '?'}...`)."
        for i, m in enumerate(members, 1)
    ]


def _calibration(meta: BundleMeta) -> str:
    c = meta.calibration
    if c is None:
        return "none (raw sigmoid of the logit)"
    line = f"temperature {c.temperature:.3f} fitted on {c.fitted_on}"
    if c.ece_before is not None and c.ece_after is not None:
        line += f" (ECE {c.ece_before:.4f} -> {c.ece_after:.4f}"
        line += f", Brier {c.brier_before:.4f} -> {c.brier_after:.4f})"
    return line


def _patients(patients: Any) -> str:
    if not isinstance(patients, dict):
        return "not recorded"
    return ", ".join(f"{split} {n}" for split, n in patients.items())


NO_REAL_FILES = (
    "Not checked on originals: run `pneumonia pairs BUNDLE --originals DIR --copies DIR --record`."
)
KERMANY_SUBTYPE = "Kermany et al. (2018), official test: ROC-AUC 0.940, accuracy 0.907"
NO_SUBTYPE = "No subtype output: bacterial and viral pneumonia are one class here."


def _subtype(meta: BundleMeta) -> list[str]:
    """The subtype output's section: how it was made and how it did, with intervals."""
    s = meta.subtype
    if s is None:
        return ["", "## Subtype", NO_SUBTYPE]
    m = s.validation.get("metrics", {})
    ci = s.validation.get("intervals", {})

    def with_ci(key: str) -> str:
        low_high = ci.get(key)
        inside = f" ({low_high[0]:.3f}-{low_high[1]:.3f})" if low_high else ""
        value = m.get(key)
        return (f"{value:.3f}" if isinstance(value, float) else _fmt(value)) + inside

    lines = [
        "",
        "## Subtype (bacterial vs viral, a second output)",
        f"- P(viral | pneumonia), named where the screening label is PNEUMONIA; viral when "
        f"P >= {s.threshold:g}. Made by: {s.trained_on}.",
        f"- Validation ({m.get('n', '?')} PNEUMONIA images, {m.get('viral', '?')} viral; 95% "
        f"intervals resampling patients): ROC-AUC {with_ci('roc_auc')}, accuracy "
        f"{with_ci('accuracy')}, viral sensitivity {with_ci('sensitivity_viral')}, "
        f"specificity {with_ci('specificity_viral')}.",
    ]
    added = meta.training.get("subtype_head", {}).get("command")
    if added:
        lines.append(f"- Added to the trained network by `{added}`.")
    oof = s.validation.get("out_of_fold")
    if oof:
        low, high = oof["interval"]
        lines.append(
            f"- Cross-fitted over training and validation ({oof['n']} images, {oof['folds']} "
            f"folds grouped by patient): ROC-AUC {oof['roc_auc']:.3f} ({low:.3f}-{high:.3f})."
        )
    lines.append(
        f"- For comparison, {KERMANY_SUBTYPE}. This output is much weaker: read it as a "
        "research signal, not a diagnosis of the cause."
    )
    return lines


def _borderline(meta: BundleMeta) -> list[str]:
    """The band around the threshold where the file could decide the label, if recorded."""
    band = meta.borderline
    if band is None:
        return []
    low, high = band.limits(meta.threshold.value)
    share = (
        ""
        if band.validation_share is None
        else (f"; {band.validation_share:.1%} of validation images fall in it")
    )
    return [
        f"- Borderline: an answer with P in [{low:.3g}, {high:.3g}) is marked borderline "
        f"(within {band.logit:.2f} in logit of the threshold): another file of the same X-ray "
        f"could change its label. {band.quantile:.0%} of {band.pairs} held-out pairs moved less "
        f"than that under every rendering ({', '.join(band.renderings)}){share}. Measured on "
        f"{band.measured_on}."
    ]


def _real_files(validation: dict[str, Any]) -> list[str]:
    """Originals and their renderings against their copies (`pneumonia pairs --record`)."""
    r = validation.get("real_files")
    if not r:
        return ["", "## Real files", NO_REAL_FILES]
    lines = [
        "",
        "## Real files (originals and their renderings, against the copies)",
        f"- {r['pairs']} originals of {r['patients']} patients ({r['which']}), each against its "
        f"224x224 copy, at the stored threshold; `{r['command']}`.",
        "",
        "| rendering | mean \\|dp\\| | max \\|dp\\| | label flips | guard flags (copies) "
        "| sensitivity | specificity |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in r["renderings"].items():
        lines.append(
            f"| {name} | {a['mean_dp']:.4f} | {a['max_dp']:.3f} | {a['flips']} | "
            f"{_fmt(a['flagged'])} ({_fmt(a['flagged_copy'])}) | "
            f"{_fmt(a['rendering']['sensitivity'])} | {_fmt(a['rendering']['specificity'])} |"
        )
    return lines


def model_card(meta: BundleMeta) -> str:
    """Markdown model card: model, data, validation metrics, operating point, use, limits."""
    t, v, d = meta.training, meta.validation, meta.data
    counts = d.get("counts", {})
    split_line = ", ".join(
        f"{split}: {c.get('NORMAL', 0)} NORMAL / {c.get('PNEUMONIA', 0)} PNEUMONIA"
        for split, c in counts.items()
    )
    cm = v.get("confusion_matrix", {})
    p = meta.preprocessing
    lines = [
        f"# Model card: {meta.architecture.name}",
        "",
        f"Created {meta.created} by pneumonia {meta.versions.get('pneumonia', '?')}. "
        "Generated from `model.json`; edit that, not this file.",
        "",
        "## Model",
        f"- Architecture: `{meta.architecture.name}` (registry name), "
        f"{meta.architecture.in_chans} input channel(s).",
        *_members(meta),
        f"- Output: {meta.output}"
        + ("; a second logit, the subtype's (below)." if meta.subtype else "."),
        f"- Input contract: grayscale, {p.image_size}x{p.image_size}, resize `{p.resize}` "
        f"({RESIZE_TEXT.get(p.resize, p.resize)}){_render(p)}, x/255 then (x - {p.mean}) / "
        f"{p.std}.",
        *_recontracted(t),
        f"- Threshold: {meta.threshold.value:.4g} ({_rule(meta)}).",
        *_site(meta),
        *_borderline(meta),
        f"- Calibration: {_calibration(meta)}.",
        _guard(meta),
        "",
        "## Data",
        f"- Manifest `{d.get('manifest', '?')}` "
        f"(sha256 `{str(d.get('manifest_sha256', '?'))[:16]}...`).",
        f"- Images per split: {split_line or 'not recorded'}.",
        f"- Patients: {_patients(d.get('patients'))}; validation is grouped by patient.",
        *_left_out(meta),
        "",
        f"## Validation metrics ({v.get('n', '?')} images, threshold {_fmt(v.get('threshold'))})",
        *_metrics_rows(v),
        "",
        f"Confusion matrix: TN {cm.get('tn')}, FP {cm.get('fp')}, FN {cm.get('fn')}, "
        f"TP {cm.get('tp')}.",
        *_real_files(v),
        "",
        "## Training",
        f"- Command: `{t.get('command') or 'not recorded'}`",
        f"- Epochs run {t.get('epochs_run')}, best epoch {t.get('best_epoch')}, "
        f"{t.get('duration_s')} s on {t.get('device')}.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in meta.versions.items())}.",
        *_exports(meta),
        *_subtype(meta),
        "",
        "## Intended use",
        INTENDED_USE,
        "",
        "## Limits",
        *(f"- {line}" for line in LIMITS),
        "",
    ]
    return "\n".join(lines)
