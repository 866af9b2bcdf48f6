"""`pneumonia report`: one self-contained HTML page about a model on a dataset.

It runs `evaluate` (metrics with intervals, figures, predictions) into the output folder and
puts everything on one page with the figures embedded: the data, the training curves (from the
bundle's own history), the metrics, the operating point, ROC/PR/reliability/confusion, a
gallery of the most confident errors, and the model card. The page needs no network.
"""

from __future__ import annotations

import base64
import csv
import io
import shlex
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from markdown_it import MarkdownIt
from PIL import Image

from pneumonia.core import LABELS, __version__
from pneumonia.core.card import model_card
from pneumonia.core.errors import ImageError
from pneumonia.core.options import Scoring
from pneumonia.core.results import EvaluationResult
from pneumonia.data.image_io import load_gray
from pneumonia.evaluation.compare import same_source
from pneumonia.evaluation.evaluate import evaluate
from pneumonia.evaluation.metrics import HEADLINE
from pneumonia.evaluation.plots import history_series, training_curves
from pneumonia.inference.loading import Bundle

GALLERY_SIZE = 8
FIGURES = (
    ("ROC", "roc.png"),
    ("precision-recall", "pr.png"),
    ("reliability", "reliability.png"),
    ("confusion matrix", "confusion_matrix.png"),
)


def png_data_uri(path: Path) -> str:
    """A PNG file as a `data:` URI, so the page carries its figures."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def thumbnail_uri(path: str, side: int = 256) -> str | None:
    """The image read through the input door, shrunk to `side`, as a PNG data URI."""
    try:
        img = Image.fromarray(load_gray(path))
    except ImageError:
        return None
    img.thumbnail((side, side))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """evaluate's `predictions.csv` with probabilities as floats."""
    with path.open(newline="") as fh:
        return [{**r, "probability": float(r["probability"])} for r in csv.DictReader(fh)]


def confident_errors(
    rows: list[dict[str, Any]], k: int = GALLERY_SIZE
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, int]:
    """(top false alarms by P, top misses by lowest P, all false alarms, all misses)."""
    false_alarms = [r for r in rows if r["label"] == LABELS[0] and r["predicted"] == LABELS[1]]
    misses = [r for r in rows if r["label"] == LABELS[1] and r["predicted"] == LABELS[0]]
    false_alarms.sort(key=lambda r: -r["probability"])
    misses.sort(key=lambda r: r["probability"])
    return false_alarms[:k], misses[:k], len(false_alarms), len(misses)


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(pair: list[float | None] | None) -> str:
    if not pair or pair[0] is None:
        return ""
    return f"{_num(pair[0])} - {_num(pair[1])}"


def _data_rows(rows: list[dict[str, Any]], bundle: Bundle, source: str) -> list[dict[str, Any]]:
    def row(name: str, normal: int, pneumonia: int, patients: Any) -> dict[str, Any]:
        total = normal + pneumonia
        pct = f"{100 * pneumonia / total:.1f}" if total else "-"
        return {
            "name": name,
            "normal": normal,
            "pneumonia": pneumonia,
            "total": total,
            "pct": pct,
            "patients": patients,
        }

    labels = [r["label"] for r in rows]
    out = [
        row(
            f"evaluated: {source}",
            labels.count(LABELS[0]),
            labels.count(LABELS[1]),
            len({r["patient"] for r in rows}),
        )
    ]
    counts, patients = bundle.meta.data.get("counts", {}), bundle.meta.data.get("patients", {})
    for split, c in counts.items():
        out.append(
            row(
                f"model's {split} split",
                c.get(LABELS[0], 0),
                c.get(LABELS[1], 0),
                patients.get(split, "?"),
            )
        )
    return out


def _training(bundle: Bundle, out: Path) -> dict[str, Any]:
    t = bundle.meta.training
    history = t.get("history") or []
    curves = None
    if history:
        curves = png_data_uri(training_curves(history_series(history), out / "curves.png"))
    columns = list(history[0]) if history else []
    epochs = [[f"{v:.4g}" if v is not None else "" for v in h.values()] for h in history]
    minutes = "n/a" if t.get("duration_s") is None else f"{t['duration_s'] / 60:.1f} min"
    line = (
        f"{t.get('epochs_run', '?')} epochs, best epoch {t.get('best_epoch', '?')}, "
        f"{minutes} on {t.get('device', '?')}; command: {t.get('command') or 'n/a'}"
    )
    if not history:
        line += " (this bundle records no per-epoch history)"
    return {"curves": curves, "columns": columns, "epochs": epochs, "line": line}


def _operating(bundle: Bundle) -> list[tuple[str, str]]:
    t, c = bundle.meta.threshold, bundle.meta.calibration
    rows = [("threshold on calibrated P(PNEUMONIA)", f"{t.value:.4g}"), ("rule", t.rule)]
    for key in ("target_sensitivity", "cost_ratio", "data", "tta"):
        if key in t.detail:
            rows.append((key.replace("_", " "), str(t.detail[key])))
    for key in ("sensitivity", "specificity"):
        if key in t.detail:
            rows.append((f"{key} where it was chosen", _num(t.detail[key])))
    if c is None:
        rows.append(("calibration", "none"))
    else:
        rows.append(("temperature", f"{c.temperature:.3f} (fitted on {c.fitted_on})"))
        rows.append(("ECE before / after", f"{_num(c.ece_before)} / {_num(c.ece_after)}"))
        rows.append(("Brier before / after", f"{_num(c.brier_before)} / {_num(c.brier_after)}"))
    return rows


def _notes(bundle: Bundle, result: EvaluationResult) -> list[str]:
    notes = []
    if same_source(bundle.meta.threshold.detail.get("data"), result["data"]):
        notes.append(
            "The threshold was chosen on these same images: sensitivity and specificity "
            "here are in-sample for it (ROC-AUC and PR-AUC are not affected)."
        )
    if result["split"] == "val" and not notes:
        notes.append("Validation data: the model's checkpoint was selected on it.")
    guard = result.get("guard", {})
    if guard.get("active"):
        notes.append(
            f"The out-of-distribution guard flagged {guard['flagged']} of "
            f"{result['metrics']['n']} images ({100 * guard['flagged_rate']:.1f}%) as unlike "
            "the training X-rays; they are scored and counted above like the others."
        )
    else:
        notes.append("The bundle has no out-of-distribution guard (`pneumonia guard`).")
    return notes


def _subtype(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """The subtype output's table rows and its three-class confusion (None without one)."""
    if not section:
        return None
    m, ci = section["metrics"], section.get("intervals", {})
    names = ("roc_auc", "accuracy", "sensitivity_viral", "specificity_viral")
    rows = [{"name": k, "value": _num(m[k]), "ci": _ci(ci.get(k))} for k in names]
    three = section["three_class"]
    return {**three, "n": m["n"], "viral": m["viral"], "table": rows}


def _gallery(rows: list[dict[str, Any]], thumbnails: bool) -> list[dict[str, Any]]:
    fa, miss, n_fa, n_miss = confident_errors(rows)

    def items(chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shown = []
        for r in chosen:
            src = thumbnail_uri(r["path"]) if thumbnails else None
            prob, name = f"{r['probability']:.3f}", Path(r["path"]).name
            shown.append({"src": src, "prob": prob, "truth": r["label"], "name": name})
        return shown

    return [
        {"title": "False alarms (NORMAL called PNEUMONIA)", "count": n_fa, "shown": items(fa)},
        {
            "title": "Missed pneumonias (PNEUMONIA called NORMAL)",
            "count": n_miss,
            "shown": items(miss),
        },
    ]


def _stress(result: dict[str, Any] | None, out: Path) -> dict[str, Any] | None:
    if result is None:
        return None
    rows = [
        {
            "shift": r["shift"] + ("" if r["scored"] else " (to refuse)"),
            "group": r["group"],
            "auc": _num(r["roc_auc"]),
            "ci": _ci(r["roc_auc_ci"]),
            "delta": f"{r['delta_roc_auc']:+.4f}",
            "sens": _num(r["sensitivity"]),
            "spec": _num(r["specificity"]),
        }
        for r in result["shifts"]
    ]
    worst = result["worst"]
    return {
        "seed": result["seed"],
        "rows": rows,
        "worst_auc": _num(worst["roc_auc"]["value"]),
        "worst_auc_shift": worst["roc_auc"]["shift"],
        "worst_sens": _num(worst["sensitivity"]["value"]),
        "worst_sens_shift": worst["sensitivity"]["shift"],
        "figure": png_data_uri(out / "stress.png"),
        "gallery": png_data_uri(out / "shifts.png"),
    }


def render(
    bundle: Bundle,
    result: EvaluationResult,
    out: Path,
    command: str,
    thumbnails: bool = True,
    stressed: dict[str, Any] | None = None,
) -> str:
    """The HTML page for an `evaluate` result written in `out`; `thumbnails=False` names the
    gallery's images without embedding them (for pages published away from the data)."""
    m, iv = result["metrics"], result["intervals"]
    boot, exact = iv.get("bootstrap", {}), iv.get("clopper_pearson", {})
    rows = read_predictions(out / "predictions.csv")
    headline = [
        {"label": label, "value": _num(m[key]), "ci": _ci(boot.get(key)) or "n/a"}
        for label, key in (
            ("ROC-AUC", "roc_auc"),
            ("sensitivity", "sensitivity"),
            ("specificity", "specificity"),
        )
    ]
    template = Environment(autoescape=select_autoescape(default=True)).from_string(
        files("pneumonia").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    )
    return template.render(
        model={
            "name": bundle.path.parent.name if bundle.path.name == "bundle" else bundle.path.name,
            "path": str(bundle.path),
            "architecture": bundle.meta.architecture.name,
            "image_size": bundle.meta.preprocessing.image_size,
        },
        data={
            "source": result["data"],
            "rows": _data_rows(rows, bundle, result["data"]),
            "unreadable": result["unreadable"],
        },
        created=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        version=__version__,
        notes=_notes(bundle, result),
        headline=headline,
        training=_training(bundle, out),
        boot_note=f", {iv.get('n_boot')} resamples of {iv.get('resampled')}" if boot else "",
        metrics=[
            {
                "name": k,
                "value": _num(m[k]),
                "boot": _ci(boot.get(k)),
                "exact": _ci(exact.get(k)),
            }
            for k in HEADLINE
        ],
        cm=m["confusion_matrix"],
        subtype=_subtype(result.get("subtype")),
        calibration={k: _num(v) for k, v in result["calibration"].items()},
        operating=_operating(bundle),
        figures=[
            (alt, png_data_uri(out / name)) for alt, name in FIGURES if (out / name).is_file()
        ],
        gallery=_gallery(rows, thumbnails),
        stress=_stress(stressed, out / "stress"),
        model_card=MarkdownIt("commonmark").enable("table").render(model_card(bundle.meta)),
        command=command,
    )


def report(
    bundle: Bundle,
    data: str | Path,
    split: str,
    out: Path,
    scoring: Scoring | None = None,
    command: str = "",
    thumbnails: bool = True,
    shifts: bool = False,
) -> Path:
    """Evaluate `bundle` on `split` of `data` into `out` and write `out/report.html`; with
    `shifts`, the shift suite too (`pneumonia.evaluation.stress`, into `out/stress/`)."""
    scoring = scoring or Scoring()
    result = evaluate(bundle, data, split, out, scoring)
    stressed = None
    if shifts:
        from pneumonia.evaluation.stress import stress

        light = Scoring(scoring.workers, scoring.show, n_boot=200)  # the suite's own intervals
        stressed = stress(bundle, data, split, out / "stress", scoring=light)
    command = command or shlex.join(["pneumonia", "report", str(bundle.path), "--data", str(data)])
    page = out / "report.html"
    page.write_text(render(bundle, result, out, command, thumbnails, stressed), encoding="utf-8")
    return page
