"""Which DICOM instances the model may answer, decided by the header before any pixel is read.

A series selector in the manner of MONAI Deploy's: the header decides, because a CT slice or
a lateral film can look enough like a frontal chest film to pass the image guard. An instance
is analysed only when every rule holds:

- an image: it has pixel data, and its SOP class is not a report, a presentation state or a
  "for processing" (raw detector) image;
- Modality CR or DX;
- a frontal view: ViewPosition PA or AP, or absent (a lateral, LL/RL, is refused), and no
  lateral or oblique view in the ViewCodeSequence;
- BodyPartExamined CHEST (or THORAX, LUNG), or absent;
- a child of the ages the model learned from: the Kermany data are children aged one to five
  (the dataset's own description), so PatientAge, or else the age at StudyDate from
  PatientBirthDate, must be at least 1 and under 6 years where the header gives one.
  `AgeRange` widens it (a site's own validation may justify that; nothing here does).

`refusal(ds)` returns why an instance is not analysed, in words naming neither label (nor the
patient's age: reasons are logged), or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from pneumonia.core.errors import DataError

MODALITIES = ("CR", "DX")
FRONTAL = ("PA", "AP")
CHEST = ("CHEST", "THORAX", "LUNG")
FOR_PROCESSING = {
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray - For Processing
    "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray - For Processing
}
_AGE = re.compile(r"^(\d{1,3})([DWMY])$")
_DAYS_PER = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


@dataclass(frozen=True)
class AgeRange:
    """Ages in years the model answers: `low` <= age < `high`."""

    low: float = 1.0
    high: float = 6.0

    @classmethod
    def parse(cls, text: str) -> AgeRange:
        """'1-6' (years, the upper bound excluded) -> AgeRange; a clear error otherwise."""
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*", text)
        if not match or float(match[1]) >= float(match[2]):
            raise DataError(f"age range {text!r}: expected LOW-HIGH in years, e.g. 1-6")
        return cls(float(match[1]), float(match[2]))

    def __str__(self) -> str:
        return f"{self.low:g} to under {self.high:g} years"


def age_years(ds: Any) -> float | None:
    """The patient's age in years from PatientAge ('004Y', '018M'), else from PatientBirthDate
    and StudyDate; None where the header gives neither (or gives them unreadably)."""
    text = str(ds.get("PatientAge", "") or "").strip().upper()
    match = _AGE.match(text)
    if match:
        return int(match[1]) * _DAYS_PER[match[2]] / 365.25
    born, seen = _date(ds.get("PatientBirthDate")), _date(ds.get("StudyDate"))
    if born is None or seen is None or seen < born:
        return None
    return (seen - born).days / 365.25


def _date(value: Any) -> date | None:
    text = str(value or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _upper(ds: Any, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip().upper()


def refusal(ds: Any, ages: AgeRange | None = None) -> str | None:
    """Why this instance is not analysed (the module's rules), or None when it may be."""
    ages = ages or AgeRange()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if "PixelData" not in ds:
        return "not an image (no pixel data: a report, a presentation state or similar)"
    if sop_class in FOR_PROCESSING or _upper(ds, "PresentationIntentType") == "FOR PROCESSING":
        return "a 'for processing' (raw detector) image; send the 'for presentation' one"
    modality = _upper(ds, "Modality")
    if modality not in MODALITIES:
        return f"modality {modality or 'absent'}; only CR and DX radiographs are analysed"
    view = _upper(ds, "ViewPosition")
    if view and view not in FRONTAL:
        return f"view position {view}; only frontal (PA or AP) films are analysed"
    coded = " ".join(str(c.get("CodeMeaning", "")) for c in ds.get("ViewCodeSequence", []))
    if "LATERAL" in coded.upper() or "OBLIQUE" in coded.upper():
        return f"view {coded.strip()[:40]}; only frontal (PA or AP) films are analysed"
    part = _upper(ds, "BodyPartExamined")
    if part and part not in CHEST:
        return f"body part {part}; only chest films are analysed"
    age = age_years(ds)
    if age is not None and not ages.low <= age < ages.high:
        return f"patient age outside the range the model learned from ({ages})"  # not the age
    return None
