"""The schema of a bundle's `model.json`: what a network is, how it reads an image, how it
decides, how it was checked. Pure data (pydantic models), read and written by
`pneumonia.core.bundle`, shown by `pneumonia.core.card`."""

from __future__ import annotations

import json
import math
import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from pneumonia.core import LABELS, SUBTYPES, __version__
from pneumonia.core.preprocess import Preprocessing

FORMAT_VERSION = 1
P = TypeVar("P")  # a probability, or an array of them


def package_versions() -> dict[str, str]:
    """Versions that shaped a model: Python and the main packages."""
    out = {"python": platform.python_version(), "pneumonia": __version__}
    for name in ("torch", "timm", "lightning", "numpy", "pillow", "scikit-learn", "safetensors"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            continue
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Member(_Strict):
    """One network of an ensemble: its architecture, contract and calibration."""

    name: str
    in_chans: int = 1
    num_classes: int = 1
    preprocessing: Preprocessing
    temperature: float = Field(1.0, gt=0)
    source: str = ""  # the bundle it came from, and its weights' sha256
    source_sha256: str = ""


class Architecture(_Strict):
    """Arguments of `create_model` that rebuild the network (an ensemble: its members)."""

    name: str
    in_chans: int = 1
    num_classes: int = 1
    members: list[Member] | None = None
    combine: str | None = None  # an ensemble's rule, see pneumonia.modeling.ensemble


class Threshold(_Strict):
    """The decision threshold on P(PNEUMONIA) and how it was chosen."""

    value: float = Field(gt=0, lt=1)
    rule: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Calibration(_Strict):
    """Temperature scaling: P(PNEUMONIA) = sigmoid(logit / temperature)."""

    temperature: float = Field(gt=0)
    fitted_on: str = "validation"
    ece_before: float | None = None
    ece_after: float | None = None
    brier_before: float | None = None
    brier_after: float | None = None


class GuardRecord(_Strict):
    """The out-of-distribution guard (`pneumonia.inference.guard`): how it scores, where it
    stands."""

    method: str
    file: str
    threshold: float
    components: int
    features: int
    max_flag_rate: float
    fitted_on: dict[str, Any] = Field(default_factory=dict)  # images, views
    validation: dict[str, Any] = Field(default_factory=dict)  # flag rates measured at fit time
    layout: dict[str, Any] | None = None  # the layout check: threshold, what it was fitted on
    score: str = (
        "mean squared whitened distance of the pooled features to the nearest class mean "
        "(about 1 for training-like X-rays); in distribution when score <= threshold"
    )


class SubtypeRecord(_Strict):
    """The second output of a network with the subtype head: P(viral | pneumonia)."""

    labels: list[str] = Field(default_factory=lambda: list(SUBTYPES))
    output: str = (
        "column 1 of the network's output: the logit of P(viral | pneumonia) = "
        "sigmoid(logit / temperature); viral when P >= threshold, named where the screening "
        "label is PNEUMONIA"
    )
    temperature: float = Field(1.0, gt=0)
    threshold: float = Field(0.5, gt=0, lt=1)
    trained_on: str = "the subtypes the PNEUMONIA file names carry (bacteria, virus)"
    validation: dict[str, Any] = Field(default_factory=dict)


MIN_BAND_PAIRS = 100
"""Fewest pairs a recorded band may rest on: its 0.95 quantile then rests on 5 images or more."""


class Borderline(_Strict):
    """Answers near the threshold that the file could decide: a calibrated logit within
    `logit` of the threshold's. Measured by `pneumonia pairs --record`: of held-out pairs, a
    share `quantile` moved by less than `logit` between the copy and any rendering of its
    original (the original, DICOM and PNG exports, a downscale, a recompression)."""

    logit: float = Field(gt=0)
    quantile: float = Field(gt=0, lt=1)
    pairs: int = Field(ge=1)
    renderings: list[str]
    measured_on: str  # which pairs, and the command that scored them
    validation_share: float | None = None  # validation images within the band, when recorded

    def limits(self, threshold: float) -> tuple[float, float]:
        """(low, high): an answer P with low <= P < high is borderline at `threshold`."""
        z = math.log(threshold / (1 - threshold))
        return 1 / (1 + math.exp(self.logit - z)), 1 / (1 + math.exp(-self.logit - z))

    def contains(self, probability: P, threshold: float) -> P:
        """Whether `probability` (a number, or an array of them elementwise) lies within the
        band around `threshold`."""
        low, high = self.limits(threshold)
        return (low <= probability) & (probability < high)  # type: ignore[operator,return-value]


class FileRecord(_Strict):
    sha256: str
    bytes: int


class BundleMeta(_Strict):
    """The schema of `model.json`."""

    format: Literal["pneumonia-bundle"] = "pneumonia-bundle"
    format_version: int = FORMAT_VERSION
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    architecture: Architecture
    labels: list[str] = Field(default_factory=lambda: list(LABELS))
    output: str = (
        "one logit; P(PNEUMONIA) = sigmoid(logit / calibration.temperature); "
        "label PNEUMONIA when P >= threshold"
    )
    preprocessing: Preprocessing
    threshold: Threshold
    calibration: Calibration | None = None
    validation: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=lambda: package_versions())
    files: dict[str, FileRecord] = Field(default_factory=dict)
    exports: dict[str, Any] = Field(default_factory=dict)  # e.g. onnx: file, opset, parity
    guard: GuardRecord | None = None  # absent: bundles made before the guard, or without one
    subtype: SubtypeRecord | None = None  # absent: one output, no subtype head
    borderline: Borderline | None = None  # absent: no pairs recorded (`pneumonia pairs --record`)
    reference: dict[str, Any] = Field(default_factory=dict)  # what `monitor` compares against

    def contract_record(self) -> str:
        """What the weights file carries to tie it to this metadata."""
        part = self.model_dump(mode="json", include={"architecture", "labels", "preprocessing"})
        for key in ("members", "combine"):  # single networks' records predate these keys
            if part["architecture"][key] is None:
                del part["architecture"][key]
        contracts = [part["preprocessing"]]
        contracts += [m["preprocessing"] for m in part["architecture"].get("members") or []]
        for contract in contracts:  # and contracts without a render step predate that key
            if contract.get("render", 0) is None:
                del contract["render"]
        return json.dumps(part, sort_keys=True)
