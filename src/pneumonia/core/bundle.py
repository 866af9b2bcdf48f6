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
from pathlib import Path

from pydantic import ValidationError

from pneumonia.core.card import model_card
from pneumonia.core.errors import BundleError
from pneumonia.core.meta import BundleMeta, FileRecord

log = logging.getLogger(__name__)
WEIGHTS, META, CARD = "model.safetensors", "model.json", "MODEL_CARD.md"
ONNX, INT8 = "model.onnx", "model.int8.onnx"
TRAIN_EXTRA = "pip install 'pneumonia[train]'"
DEFAULT_BUNDLE = Path(__file__).parents[1] / "assets" / "default"


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


def write_meta(meta: BundleMeta, folder: Path) -> Path:
    """Write `model.json` (atomically) and the model card made from it."""
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
