"""An answer as DICOM: a TID 1500 Structured Report and a Secondary Capture of its Grad-CAM.

Why TID 1500 (Measurement Report): it is the template IHE's AI Results profile builds on,
highdicom builds and validates it, and DICOM viewers and archives (OHIF, Orthanc's viewer,
dcm4chee) show it as a tree. The report holds one measurement group for the whole image:

    Imaging Measurement Report (TID 1500)
      Procedure reported: Plain chest X-ray (SCT 399208008)
      Observer: the device "pneumonia" (model name)
      Imaging measurements
        Measurement group (TID 1501), finding type Pneumonia (SCT 233604007)
          Algorithm: the model's name and version, the threshold among its parameters
          Source image: the analysed SOP instance
          Screening result = PNEUMONIA or NORMAL (exactly as `pneumonia predict` prints it)
          P(PNEUMONIA) = 0.873 (no units)
          Threshold = 0.5
          Borderline = Yes/No (where the bundle records a band)
          Image guard = in distribution / not like the training films (with its score)
          Pneumonia subtype = bacterial/viral, P(viral | pneumonia) (with a subtype head)
          Intended use = research use, not for diagnosis

Both objects join the source's study (its Study Instance UID, patient and study modules, as
highdicom copies them: nothing else of the source's header) in a new series of their own, and
their UIDs derive from the source instance's UID and the model's version, so an answer sent
twice is the same instance twice, which an archive stores once.
"""

from __future__ import annotations

from typing import Any

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from pneumonia.core import __version__
from pneumonia.core.bundle import model_version
from pneumonia.inference.loading import Bundle
from pneumonia.inference.predictions import Prediction

SCHEME = "99PNEUMONIA"  # a private coding scheme for what no standard code names exactly
INTENDED_USE = "research use, not for diagnosis"
SC_SIDE = 1536  # the capture's longest side, in pixels
MANUFACTURER = "pneumonia (open source)"
SR_SERIES, SC_SERIES = 9901, 9902
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
COPIED = (
    *REQUIRED_UIDS,
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",  # patient (type 2)
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",  # study
    "Modality", "IssuerOfPatientID", "PatientAge",
)  # fmt: skip


def _code(value: str, meaning: str, scheme: str = SCHEME) -> Any:
    return Code(value, scheme, meaning)


def _uid(anchor: Any, bundle: Bundle, what: str) -> str:
    """A UID that is the same for the same anchor (the source's instance UID for an object,
    its study UID for a series), model and object."""
    return str(generate_uid(entropy_srcs=[str(anchor), model_version(bundle.meta), what]))


def reference(source: Any) -> Any:
    """The source's identifying modules alone (patient, study, its series and instance), with
    DICOM's required-but-may-be-empty attributes empty where the source lacks them: what the
    results copy from it, and no more."""
    ref = Dataset()
    for keyword in COPIED:
        if keyword in source:
            setattr(ref, keyword, source[keyword].value)
        elif keyword not in REQUIRED_UIDS:
            setattr(ref, keyword, None)  # type 2: present, may be empty
    missing = [k for k in REQUIRED_UIDS if not str(ref.get(k, "") or "")]
    if missing:
        raise ValueError(f"the dataset has no {', '.join(missing)}")
    return ref


def _evaluations(answer: Prediction) -> list[Any]:
    yes, no = _code("373066001", "Yes", "SCT"), _code("373067005", "No", "SCT")
    found = [hd.sr.QualitativeEvaluation(
        _code("screening-result", "Screening result"), _code(str(answer.label), str(answer.label))
    )]  # fmt: skip
    if answer.borderline is not None:
        found.append(hd.sr.QualitativeEvaluation(
            _code("borderline", "Borderline"), yes if answer.borderline else no
        ))  # fmt: skip
    if answer.in_distribution is not None:
        verdict = ("in-dist", "in distribution") if answer.in_distribution else (
            "out-of-dist", "not like the training films")  # fmt: skip
        found.append(
            hd.sr.QualitativeEvaluation(_code("image-guard", "Image guard"), _code(*verdict))
        )
    if answer.subtype is not None:
        found.append(hd.sr.QualitativeEvaluation(
            _code("subtype", "Pneumonia subtype"), _code(answer.subtype, answer.subtype)
        ))  # fmt: skip
    found.append(hd.sr.QualitativeEvaluation(
        _code("intended-use", "Intended use"), _code("research-use", INTENDED_USE)
    ))  # fmt: skip
    return found


def _measurements(answer: Prediction, threshold: float) -> list[Any]:
    unit = _code("1", "no units", "UCUM")
    values = [
        ("p-pneumonia", "P(PNEUMONIA)", answer.probability),
        ("threshold", "Threshold", threshold),
    ]
    if answer.ood_score is not None:
        values.append(("guard-score", "Image guard score", answer.ood_score))
    if answer.subtype_probability is not None:
        values.append(("p-viral", "P(viral | pneumonia)", answer.subtype_probability))
    return [
        hd.sr.Measurement(name=_code(key, meaning), value=round(float(v), 6), unit=unit)
        for key, meaning, v in values
        if v is not None
    ]


def structured_report(source: Any, answer: Prediction, bundle: Bundle) -> Any:
    """The TID 1500 report of `answer` on the `source` dataset (see the module's doc)."""
    algorithm = hd.sr.AlgorithmIdentification(
        name="pneumonia " + bundle.meta.architecture.name,
        family=codes.cid7162.ArtificialIntelligence,
        version=model_version(bundle.meta),
        parameters=[f"threshold={bundle.threshold:.6g}", f"backend={bundle.backend}"],
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="whole image"),
        finding_type=_code("233604007", "Pneumonia", "SCT"),
        algorithm_id=algorithm,
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(
                str(source.SOPClassUID), str(source.SOPInstanceUID)
            )
        ],
        measurements=_measurements(answer, bundle.threshold),
        qualitative_evaluations=_evaluations(answer),
    )
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_uid(source.StudyInstanceUID, bundle, "device"), name="pneumonia",
        manufacturer_name=MANUFACTURER, model_name=bundle.meta.architecture.name,
    )  # fmt: skip
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.cid270.Device, observer_identifying_attributes=device
    ))  # fmt: skip
    content = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=_code("399208008", "Plain chest X-ray", "SCT"),
        imaging_measurements=[group],
    )
    report = hd.sr.ComprehensiveSR(
        evidence=[source], content=content[0],
        series_instance_uid=_uid(source.StudyInstanceUID, bundle, "sr"), series_number=SR_SERIES,
        sop_instance_uid=_uid(source.SOPInstanceUID, bundle, "sr"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
    )  # fmt: skip
    report.SeriesDescription = f"pneumonia AI result ({INTENDED_USE})"
    report.SoftwareVersions = __version__
    return report


def _burn_in(overlay: Image.Image) -> np.ndarray:
    """The overlay at SC_SIDE at most, with the intended use burned in below it."""
    image = overlay.convert("RGB")
    if max(image.size) > SC_SIDE:
        image.thumbnail((SC_SIDE, SC_SIDE))
    band = max(24, image.width // 40)
    canvas = Image.new("RGB", (image.width, image.height + band), (0, 0, 0))
    canvas.paste(image, (0, 0))
    font = ImageFont.load_default(size=band * 3 // 5)
    text = f"{INTENDED_USE.upper()} - pneumonia {__version__}"
    ImageDraw.Draw(canvas).text(
        (band // 3, image.height + band // 5), text, fill="yellow", font=font
    )
    width, height = canvas.size
    return np.asarray(canvas.crop((0, 0, width - width % 2, height - height % 2)))


def secondary_capture(source: Any, overlay: Image.Image, bundle: Bundle) -> Any:
    """The Grad-CAM overlay (its caveat and the intended use burned in) as a Secondary
    Capture image in the source's study, JPEG baseline compressed."""
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=_burn_in(overlay),
        photometric_interpretation=hd.PhotometricInterpretationValues.YBR_FULL_422,
        bits_allocated=8, coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=_uid(source.StudyInstanceUID, bundle, "sc"), series_number=SC_SERIES,
        sop_instance_uid=_uid(source.SOPInstanceUID, bundle, "sc"), instance_number=1,
        manufacturer=MANUFACTURER, patient_orientation=("L", "F"),
        transfer_syntax_uid=JPEGBaseline8Bit,
    )  # fmt: skip
    capture.SeriesDescription = f"pneumonia Grad-CAM ({INTENDED_USE})"
    capture.BurnedInAnnotation = "YES"
    capture.SoftwareVersions = __version__
    return capture


def read_report(report: Any) -> dict[str, Any]:
    """What a report of `structured_report` says, by concept name: {"Screening result":
    "PNEUMONIA", "P(PNEUMONIA)": 0.873, ...}, and the analysed instance's UID under
    "source" (for checking reports found in an archive against `pneumonia predict`)."""
    found: dict[str, Any] = {}

    def walk(items: Any) -> None:
        for item in items:
            name = (
                item.ConceptNameCodeSequence[0].CodeMeaning
                if "ConceptNameCodeSequence" in item
                else ""
            )
            kind = item.get("ValueType", "")
            if kind == "NUM":
                found[name] = float(item.MeasuredValueSequence[0].NumericValue)
            elif kind == "CODE":
                found[name] = str(item.ConceptCodeSequence[0].CodeMeaning)
            elif kind in ("TEXT", "UIDREF"):
                found.setdefault(name, str(item.get("TextValue", item.get("UID", ""))))
            elif kind == "IMAGE":
                found["source"] = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            walk(item.get("ContentSequence", []))

    walk(report.get("ContentSequence", []))
    return found
