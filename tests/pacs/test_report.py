"""The answer as DICOM: the TID 1500 report and the Grad-CAM capture, built with highdicom."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from pacs.conftest import chest_film
from pneumonia.core.bundle import model_version
from pneumonia.data.dicom import decode_dataset
from pneumonia.inference.predictions import prediction, score_squares
from pneumonia.pacs.report import (
    INTENDED_USE,
    read_report,
    reference,
    secondary_capture,
    structured_report,
)


def answer_for(bundle: Any, ds: Any) -> Any:
    square = bundle.contract.square(decode_dataset(ds, "x").pixels)
    p, score, viral = score_squares(bundle, [square])[0]
    return prediction(bundle, "x", float(p), float(score), float(viral))


def reread(ds: Any) -> Any:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return dcmread(io.BytesIO(buffer.getvalue()))


def test_the_report_says_what_predict_says_in_the_source_study(
    tmp_path: Path, shipped: Any
) -> None:
    source = dcmread(chest_film(tmp_path / "a.dcm"))
    answer = answer_for(shipped, source)
    report = reread(structured_report(reference(source), answer, shipped))
    said = read_report(report)
    assert said["Screening result"] == answer.label
    assert said["P(PNEUMONIA)"] == pytest.approx(answer.probability, abs=1e-6)
    assert said["Threshold"] == pytest.approx(shipped.threshold, abs=1e-6)
    assert said["Borderline"] == ("Yes" if answer.borderline else "No")
    assert said["Image guard"] in ("in distribution", "not like the training films")
    assert said["Intended use"] == INTENDED_USE
    assert said["Algorithm Version"] == model_version(shipped.meta)
    assert said["source"] == source.SOPInstanceUID
    assert report.StudyInstanceUID == source.StudyInstanceUID
    assert report.SeriesInstanceUID != source.SeriesInstanceUID
    assert report.PatientID == source.PatientID  # the source's patient, nothing added
    assert "PatientBirthDate" not in source or report.PatientBirthDate == source.PatientBirthDate


def test_the_same_answer_is_the_same_instance(tmp_path: Path, shipped: Any) -> None:
    source = dcmread(chest_film(tmp_path / "a.dcm"))
    other = dcmread(chest_film(tmp_path / "b.dcm", seed=1))
    answer = answer_for(shipped, source)
    first, again = (structured_report(reference(source), answer, shipped) for _ in range(2))
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert (
        structured_report(reference(other), answer, shipped).SOPInstanceUID != first.SOPInstanceUID
    )


def test_a_source_without_its_study_uid_is_refused(tmp_path: Path) -> None:
    source = dcmread(chest_film(tmp_path / "a.dcm", StudyInstanceUID=""))
    with pytest.raises(ValueError, match="StudyInstanceUID"):
        reference(source)


def test_the_capture_burns_in_the_intended_use(tmp_path: Path, shipped: Any) -> None:
    source = dcmread(chest_film(tmp_path / "a.dcm"))
    overlay = Image.fromarray(np.full((300, 4000, 3), 90, dtype=np.uint8))
    capture = reread(secondary_capture(reference(source), overlay, shipped))
    pixels = capture.pixel_array
    assert (
        capture.BurnedInAnnotation == "YES" and capture.StudyInstanceUID == source.StudyInstanceUID
    )
    assert max(pixels.shape[:2]) <= 1536 and pixels.shape[2] == 3
    band = pixels[-10:].astype(int)  # the yellow words under the picture
    assert (band[..., 0] - band[..., 2]).max() > 100
    assert str(capture.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.50"
