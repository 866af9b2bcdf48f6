"""`pneumonia recontract BUNDLE --out NEW`: the same weights under another input contract.

The contract says how a decoded image becomes the network's square (`Preprocessing`: size,
resize mode, and the optional `render` step that renders every image as the training copies
were). Changing it changes what the network sees, so everything fitted on what it saw is
fitted again, on the data the bundle was trained on: calibration and threshold on validation
by the bundle's own rule (without the images its label audit flagged), the guard and the
monitoring reference on training and validation features, and the int8 model is judged again
by its parity rule (kept only if it passes). The network's bytes (`model.onnx`, the int8 model)
are the source's own; the weights file is the source's tensors under a header that names the
new contract. A bundle with a subtype head, or an ensemble, is refused: recontract the network
first, then add the head (`pneumonia subtype`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from pneumonia.core.bundle import INT8, ONNX, WEIGHTS, file_record, read_meta, write_meta
from pneumonia.core.config import Config, OperatingConfig
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.options import Scoring
from pneumonia.core.outputs import new_folder, plain_mode
from pneumonia.core.preprocess import Preprocessing
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import read_manifest
from pneumonia.evaluation.tune import copy_bundle, retune
from pneumonia.inference.loading import load_bundle
from pneumonia.training.guard_fit import guard_bundle
from pneumonia.training.quantize import judge_int8

log = logging.getLogger(__name__)


def operating_config(meta: Any) -> OperatingConfig:
    """The rule a bundle's threshold was chosen by, as an `OperatingConfig`."""
    t = meta.threshold
    d = t.detail
    return OperatingConfig(
        rule=t.rule,
        target_sensitivity=d.get("target_sensitivity", 0.99),
        cost_ratio=d.get("cost_ratio", 10.0),
        fixed=t.value if t.rule == "fixed" else 0.5,
        calibrate=meta.calibration is not None,
        views=d.get("views", []),
        pool=d.get("pool", "pooled"),
        smooth=bool(d.get("smooth", False)),
    )


def _check(meta: Any, source: Path, out: Path) -> None:
    new_folder(out)
    if meta.architecture.members is not None:
        raise PneumoniaError(f"{source}: an ensemble; recontract its members, then ensemble them")
    if meta.subtype is not None:
        raise PneumoniaError(
            f"{source}: has a subtype head, fitted under the old contract; recontract the "
            "bundle it was added to, then add the head again (`pneumonia subtype`)"
        )
    if ONNX not in meta.files:
        raise PneumoniaError(f"{source}: has no model.onnx; run `pneumonia export {source}` first")
    if meta.threshold.rule == "site_unlabelled":
        raise PneumoniaError(f"{source}: a site bundle; recontract the bundle it was made from")


def _new_weights(folder: Path, meta: Any) -> Any:
    """Rewrite the weights file's header for `meta`'s contract; the metadata recording it."""
    from safetensors.numpy import load_file, save_file

    weights = folder / WEIGHTS
    tensors = load_file(str(weights))
    save_file(tensors, str(weights), metadata={"pneumonia": meta.contract_record()})
    plain_mode(weights)
    return meta.model_copy(update={"files": {**meta.files, WEIGHTS: file_record(weights)}})


def recontract(
    source: str | Path | None,
    contract: Preprocessing,
    manifest: Path,
    out: Path,
    command: str = "",
    workers: int | None = None,
) -> dict[str, Any]:
    """Write into `out` a copy of the bundle `source` under `contract`, with everything fitted
    on what the network sees fitted again (see the module's doc). Returns a summary."""
    folder, meta = read_meta(source)
    _check(meta, folder, out)
    bundle = load_bundle(folder, "onnx")
    previous = meta.preprocessing
    new = copy_bundle(bundle, out)
    (new / INT8).unlink(missing_ok=True)
    record = {
        "command": command,
        "from": str(folder),
        "previous_preprocessing": previous.model_dump(),
    }
    dropped = {INT8, meta.guard.file if meta.guard else INT8}  # judged or fitted again below
    files = {k: v for k, v in meta.files.items() if k not in dropped}
    updated = meta.model_copy(
        update={
            "preprocessing": contract,
            "files": files,
            "exports": {k: v for k, v in meta.exports.items() if k == "onnx"},
            "guard": None,
            "reference": {},
            "borderline": None,  # measured under the old contract
            "training": {**meta.training, "recontracted": record},
        }
    )
    write_meta(_new_weights(new, updated), new)
    log.info("caching the manifest's images under the new contract")
    trained = Config.model_validate(meta.training.get("config", {}))
    prepare_cache(read_manifest(manifest), trained.data.cache_dir, contract, workers, False)
    audit = meta.data.get("left_out", {}).get("operating", {}).get("file")
    tuned = retune(
        load_bundle(new, "onnx"), manifest, "val", operating_config(meta), in_place=True,
        scoring=Scoring(workers, show=False), audit=Path(audit) if audit else None,
    )  # fmt: skip
    guard = None
    if meta.guard is not None:
        guard = guard_bundle(new, manifest, trained.guard, force=True)
    int8 = None
    if INT8 in meta.files and meta.exports.get("int8", {}).get("passed"):
        tmp = new / f"{INT8}.tmp"
        shutil.copy2(folder / INT8, tmp)
        how = {k: v for k, v in meta.exports["int8"].items() if k in ("method", "calibration")}
        int8 = judge_int8(load_bundle(new, "onnx"), tmp, manifest, how, "val", workers)
    return {"bundle": str(new), "threshold": tuned["operating_point"], "guard": guard, "int8": int8}
