"""The header rules: which instances the model may answer, decided before any pixel is read."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from pneumonia.core.errors import DataError
from pneumonia.data.dicom_rules import AgeRange, age_years, refusal

LABELS = ("PNEUMONIA", "NORMAL")


def header(**fields: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined, ds.PatientAge = "CR", "PA", "CHEST", "003Y"
    ds.PixelData = b"\x00\x00"
    for keyword, value in fields.items():
        if value == "":
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    "fields",
    [{}, {"Modality": "DX"}, {"ViewPosition": "AP"}, {"ViewPosition": ""},
     {"BodyPartExamined": ""}, {"BodyPartExamined": "thorax"}, {"PatientAge": ""},
     {"PatientAge": "018M"},
     {"PatientAge": "", "PatientBirthDate": "20200301", "StudyDate": "20250228"}],
)  # fmt: skip
def test_a_frontal_chest_film_of_a_young_child_is_analysed(fields: dict[str, str]) -> None:
    assert refusal(header(**fields)) is None


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"Modality": "CT"}, "modality CT"),
        ({"Modality": ""}, "modality absent"),
        ({"ViewPosition": "LL"}, "view position LL"),
        ({"BodyPartExamined": "ABDOMEN"}, "body part ABDOMEN"),
        ({"PatientAge": "045Y"}, "patient age outside"),
        ({"PatientAge": "006Y"}, "patient age outside"),  # the upper bound is excluded
        ({"PatientAge": "003W"}, "patient age outside"),
        (
            {"PatientAge": "", "PatientBirthDate": "19800101", "StudyDate": "20250101"},
            "age outside",
        ),
        ({"PresentationIntentType": "FOR PROCESSING"}, "for processing"),
        ({"PixelData": ""}, "not an image"),
    ],
)
def test_anything_else_is_refused_saying_why_and_naming_no_label(
    fields: dict[str, str], named: str
) -> None:
    why = refusal(header(**fields))
    assert why is not None and named in why
    assert not any(label in why for label in LABELS)
    assert "45" not in why  # the patient's age is not repeated (reasons are logged)


def test_an_sr_is_refused_by_its_modality() -> None:
    ds = header(Modality="SR", PixelData="")
    assert "not an image" in str(refusal(ds))


def test_a_lateral_named_by_its_view_code_is_refused() -> None:
    ds = header(ViewPosition="")
    view = Dataset()
    view.CodeValue, view.CodingSchemeDesignator, view.CodeMeaning = (
        "399198007",
        "SCT",
        "right lateral",
    )
    ds.ViewCodeSequence = [view]
    assert "right lateral" in str(refusal(ds))
    view.CodeValue, view.CodeMeaning = "399348003", "postero-anterior"
    assert refusal(ds) is None


def test_the_age_range_can_be_widened() -> None:
    teen = header(PatientAge="014Y")
    assert refusal(teen) is not None
    assert refusal(teen, AgeRange.parse("0-18")) is None
    with pytest.raises(DataError, match="LOW-HIGH"):
        AgeRange.parse("18-2")


@pytest.mark.parametrize(("age", "years"), [("004Y", 4.0), ("006M", 0.5), ("oops", None)])
def test_patient_age_is_read_in_its_units(age: str, years: float | None) -> None:
    found = age_years(header(PatientAge=age))
    assert found == years if years is None else found == pytest.approx(years, abs=0.01)
