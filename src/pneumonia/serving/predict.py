"""`pneumonia predict` outputs: CSV and JSON tables, and images with their prediction drawn on."""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from pneumonia.core.errors import ImageError
from pneumonia.data.image_io import read_image
from pneumonia.inference.loading import Bundle
from pneumonia.inference.predictions import Prediction

log = logging.getLogger(__name__)
FIELDS = (
    "path",
    "probability",
    "label",
    "in_distribution",
    "ood_score",
    "error",
    "subtype",
    "subtype_probability",
    "borderline",
)


def write_tables(predictions: list[Prediction], bundle: Bundle, out: Path) -> tuple[Path, Path]:
    """`predictions.csv` and `predictions.json` (with the bundle and threshold) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "predictions.csv", out / "predictions.json"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for p in predictions:
            row = asdict(p)
            row["probability"] = "" if p.probability is None else f"{p.probability:.6f}"
            row["ood_score"] = "" if p.ood_score is None else f"{p.ood_score:.4f}"
            viral = p.subtype_probability
            row["subtype_probability"] = "" if viral is None else f"{viral:.6f}"
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    payload = {
        "bundle": str(bundle.path),
        "architecture": bundle.meta.architecture.name,
        "threshold": bundle.threshold,
        "threshold_rule": bundle.meta.threshold.rule,
        "guard": guard_summary(bundle),
        "borderline": borderline_summary(bundle),
        "subtype": None if bundle.meta.subtype is None else bundle.meta.subtype.output,
        "predictions": [asdict(p) for p in predictions],
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    return csv_path, json_path


def guard_summary(bundle: Bundle) -> dict[str, Any]:
    """What a client needs to read `in_distribution` and `ood_score`: the guard or its absence."""
    record = bundle.meta.guard
    if bundle.guard is None or record is None:
        why = "the bundle has no guard" if record is None else "its model file lacks features"
        return {"active": False, "reason": f"{why}; in_distribution is null"}
    score = record.score
    if record.layout:  # the guard's second part, on the pixels (inference/guard.py)
        score += (
            "; an image its layout check flags (an X-ray's negative or a small piece of one) "
            "scores above the threshold whatever its distance"
        )
    return {"active": True, "method": record.method, "threshold": record.threshold, "score": score}


def borderline_summary(bundle: Bundle) -> dict[str, Any]:
    """What a client needs to read `borderline`: the band around the threshold and how it was
    measured, or its absence."""
    band = bundle.meta.borderline
    if band is None:
        return {"active": False, "reason": "the bundle records no band; borderline is null"}
    low, high = band.limits(bundle.threshold)
    return {
        "active": True,
        "low": low,
        "high": high,
        "meaning": (
            f"P in [{low:.3g}, {high:.3g}): the label could change with the file the image comes "
            f"from (an original, a DICOM or PNG export, a copy); {band.quantile:.0%} of "
            f"{band.pairs} held-out pairs moved less than this band's half-width, "
            f"{band.logit:.2f} in logit"
        ),
    }


def _safe_name(path: str, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:80] or "image"
    return f"{index:04d}-{stem}.png"


def annotate(prediction: Prediction, threshold: float, target: Path, max_side: int = 1024) -> Path:
    """The original image (grayscale, own aspect) with label and probability written on top."""
    if prediction.probability is None:
        raise ValueError("cannot annotate an image without a prediction")
    try:
        gray = read_image(prediction.path)[1].pixels
    except ImageError as exc:  # changed since prediction; say so, keep going
        raise ValueError(exc.reason) from None
    img = Image.fromarray(gray).convert("RGB")
    img.thumbnail((max_side, max_side))
    if img.width < 512:  # small images get enlarged so the text stays readable
        scale = 512 / img.width
        img = img.resize((512, round(img.height * scale)), Image.Resampling.BILINEAR)
    text = f"{prediction.label}  P(PNEUMONIA)={prediction.probability:.3f}"
    text += f"  (threshold {threshold:.3g})"
    if prediction.borderline:
        text += "  borderline"
    if prediction.in_distribution is False:
        text = f"NOT LIKE A CHEST X-RAY - do not trust: {text}"
    size = img.width // 20
    font = ImageFont.load_default(size=size)
    while size > 8 and font.getlength(text) > img.width * 0.95:
        size -= 1
        font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((0, 0), text, font=font)
    draw.rectangle((0, 0, img.width, box[3] + size // 2), fill=(0, 0, 0))
    color = (255, 80, 80) if prediction.label == "PNEUMONIA" else (90, 220, 90)
    if prediction.in_distribution is False:
        color = (255, 200, 0)
    draw.text((size // 3, size // 4), text, fill=color, font=font)
    img.save(target)
    return target


def annotate_all(predictions: list[Prediction], threshold: float, folder: Path) -> list[Path]:
    """`annotate` every predicted image into `folder`; failures are logged and skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, p in enumerate(predictions):
        if p.probability is None:
            continue
        try:
            written.append(annotate(p, threshold, folder / _safe_name(p.path, i)))
        except (ValueError, OSError) as exc:
            log.warning("%s: not annotated (%s)", p.path, exc)
    return written
