"""Model bundles: a folder with `model.safetensors` and `model.json`, nothing else needed.

`MODEL_CARD.md` is written beside them from `model.json`, for people; loading ignores it.

`model.json` says everything a user of the weights must know: the registry architecture and
its arguments, the label order, the preprocessing contract, the decision threshold and the
rule that chose it, validation metrics, the data manifest's hash, package versions and the
training command. No pickle anywhere: weights are safetensors, metadata is JSON.

Tampering is detected both ways: `model.json` records the sha256 of the weights file, and the
weights file's own metadata records the architecture, labels and preprocessing, which must
match `model.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pneumonia.core import LABELS, SUBTYPES, __version__
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.outputs import plain_mode
from pneumonia.core.preprocess import Preprocessing

if TYPE_CHECKING:
    from torch import nn

    from pneumonia.modeling.guard import Guard

log = logging.getLogger(__name__)
WEIGHTS, META, CARD = "model.safetensors", "model.json", "MODEL_CARD.md"
ONNX, INT8 = "model.onnx", "model.int8.onnx"
TRAIN_EXTRA = "pip install 'pneumonia[train]'"
FORMAT_VERSION = 1
DEFAULT_BUNDLE = Path(__file__).parents[1] / "assets" / "default"


class BundleError(PneumoniaError):
    """A bundle is missing, incomplete, altered or unreadable."""


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
    """The out-of-distribution guard (`pneumonia.modeling.guard`): how it scores, where it
    stands."""

    method: str
    file: str
    threshold: float
    components: int
    features: int
    max_flag_rate: float
    fitted_on: dict[str, Any] = Field(default_factory=dict)  # images, views
    validation: dict[str, Any] = Field(default_factory=dict)  # flag rates measured at fit time
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


@dataclass
class Bundle:
    """A loaded bundle: its metadata and the network on CPU, a PyTorch module in eval mode
    (`backend` torch) or an ONNX Runtime session (`backend` onnx, or int8 for the quantized
    copy)."""

    path: Path
    meta: BundleMeta
    model: Any
    backend: str = "torch"
    guard: Guard | None = None

    @property
    def threshold(self) -> float:
        return self.meta.threshold.value

    @property
    def contract(self) -> Preprocessing:
        return self.meta.preprocessing

    @property
    def temperature(self) -> float:
        return self.meta.calibration.temperature if self.meta.calibration else 1.0


def package_versions() -> dict[str, str]:
    """Versions that shaped a model: Python and the main packages."""
    out = {"python": platform.python_version(), "pneumonia": __version__}
    for name in ("torch", "timm", "lightning", "numpy", "pillow", "scikit-learn", "safetensors"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            continue
    return out


def model_version(meta: BundleMeta) -> str:
    """`<architecture>@<first 12 hex of the weights' sha256>`: how services and logs name a
    model."""
    record = meta.files.get(WEIGHTS)
    return f"{meta.architecture.name}@{record.sha256[:12] if record else 'unknown'}"


def file_record(path: Path) -> FileRecord:
    """sha256 and size of a bundle file, for `BundleMeta.files`."""
    return FileRecord(sha256=_sha256(path), bytes=path.stat().st_size)


def verify_file(folder: Path, meta: BundleMeta, name: str) -> Path:
    """`folder/name`, after checking it matches the sha256 that `model.json` records."""
    path = folder / name
    if not path.is_file():
        raise BundleError(f"{folder}: {name} is missing")
    record = meta.files.get(name)
    if record is None:
        raise BundleError(f"{folder / META}: records no hash for {name}; cannot verify it")
    found = _sha256(path)
    if found != record.sha256:
        raise BundleError(
            f"{path}: altered since the bundle was written (sha256 {found[:12]}..., "
            f"{META} expects {record.sha256[:12]}...); the files no longer belong together"
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(model: nn.Module, meta: BundleMeta, folder: Path) -> Path:
    """Write weights and metadata into `folder` (created; files inside are replaced). Only the
    weights travel: a guard, exports and the monitoring reference belong to files that are
    not written here, so they are dropped (`pneumonia guard`, `export` add them again)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"pneumonia": meta.contract_record()})
    plain_mode(weights)
    update = {"files": {WEIGHTS: file_record(weights)}, "guard": None, "reference": {}}
    meta = meta.model_copy(update={**update, "exports": {}})
    write_meta(meta, folder)
    log.info("bundle written: %s", folder)
    return folder


def write_meta(meta: BundleMeta, folder: Path) -> Path:
    """Write `model.json` (atomically) and the model card made from it."""
    from pneumonia.core.card import model_card

    target = folder / META
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)
    (folder / CARD).write_text(model_card(meta), encoding="utf-8")
    return target


def _bundle_dir(path: str | Path | None) -> Path:
    if path is None:
        if not (DEFAULT_BUNDLE / META).is_file():
            raise BundleError(
                f"no default model in this installation ({DEFAULT_BUNDLE}); pass a BUNDLE folder"
            )
        return DEFAULT_BUNDLE
    folder = Path(path)
    if folder.is_file() and folder.name in (META, WEIGHTS):
        folder = folder.parent
    if not folder.exists():
        raise BundleError(f"{folder}: no such bundle folder")
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a bundle folder (expected {META} and {WEIGHTS})")
    return folder


def read_meta(path: str | Path | None = None) -> tuple[Path, BundleMeta]:
    """The bundle folder and its validated `model.json` (the default bundle when None)."""
    folder = _bundle_dir(path)
    meta_path = folder / META
    if not meta_path.is_file():
        raise BundleError(f"{folder}: not a model bundle ({META} is missing)")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
        return folder, BundleMeta.model_validate(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{meta_path}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BundleError(f"{meta_path}: not a valid bundle description ({where})") from None


def int8_state(meta: BundleMeta) -> tuple[bool, bool]:
    """(usable, guarded): the bundle has an int8 model that passed its parity rule against
    the float `model.onnx` it now has; and its guard's verdicts were judged on that int8
    model with the guard it now has (a re-fitted guard or re-exported model is not)."""
    record = meta.exports.get("int8", {})
    onnx = meta.files.get(ONNX)
    usable = INT8 in meta.files and record.get("passed") is True and onnx is not None
    usable &= record.get("source_sha256") == (onnx.sha256 if onnx else None)
    guard = meta.files.get(meta.guard.file) if meta.guard else None
    guarded = usable and guard is not None and record.get("guard_sha256") == guard.sha256
    return bool(usable), bool(guarded and "same_guard_verdict" in record)
