"""Fitting the guard: at the end of training, and on an existing bundle (`pneumonia guard`)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TinyRun, unguarded_copy
from pneumonia.core.bundle import ONNX, file_record, read_meta, write_meta
from pneumonia.core.config import GuardConfig
from pneumonia.core.errors import PneumoniaError
from pneumonia.data.ood_corpus import KINDS
from pneumonia.data.split import read_manifest
from pneumonia.inference.guard import GUARD
from pneumonia.inference.loading import load_bundle
from pneumonia.training.guard_fit import guard_bundle


def test_training_fits_the_guard_and_the_reference(tiny_run: TinyRun) -> None:
    _, meta = read_meta(tiny_run.bundle)
    guard, cfg = meta.guard, tiny_run.cfg.guard
    assert guard is not None and GUARD in meta.files
    rows = read_manifest(tiny_run.cfg.data.manifest)
    n_train = sum(r.split == "train" for r in rows)
    n_val = sum(r.split == "val" for r in rows)
    assert guard.fitted_on == {
        "train_images": n_train,
        "augmented_views": cfg.augmented_views,
        "rendered_views": cfg.rendered_views,
    }
    assert guard.validation["images"] == n_val
    assert guard.validation["flagged"] <= cfg.max_flag_rate + 1e-9
    assert set(guard.validation["corpus_flagged"]) == set(KINDS)
    assert guard.layout is not None  # the pixel check, within half the budget
    assert guard.layout["validation_flagged"] <= cfg.max_flag_rate / 2 + 1e-9
    assert guard.layout["fitted_on"]["views"] == n_train * (1 + cfg.augmented_views)
    ref = meta.reference
    assert len(ref["probability"]) == len(ref["ood_score"]) == n_val
    assert len(ref["brightness"]) == len(ref["contrast"]) == n_train and ref["inputs"] == "train"
    assert ref["train_prevalence"] == pytest.approx(
        np.mean([r.label == "PNEUMONIA" for r in rows if r.split == "train"])
    )
    assert load_bundle(tiny_run.bundle).guard.threshold == guard.threshold  # type: ignore[union-attr]


OLD_EXPORT = {"file": ONNX, "opset": 17, "max_abs_diff_probability": 0.0, "images": 6}


def without_guard(tiny_run: TinyRun, folder: Path) -> Path:
    """A copy of the tiny bundle as bundles were before the guard, with a logit-only ONNX."""
    unguarded_copy(tiny_run.bundle, folder)
    _, meta = read_meta(folder)
    bundle = load_bundle(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = bundle.contract.image_size
        torch.onnx.export(bundle.model, (torch.zeros(1, 1, size, size),), str(folder / ONNX),
                          dynamo=False, input_names=["image"], output_names=["logit"],
                          dynamic_axes={"image": {0: "batch"}, "logit": {0: "batch"}})  # fmt: skip
    files = {**meta.files, ONNX: file_record(folder / ONNX)}
    write_meta(meta.model_copy(update={"exports": {"onnx": OLD_EXPORT}, "files": files}), folder)
    return folder


def test_guarding_an_old_bundle(
    tiny_run: TinyRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    folder = without_guard(tiny_run, tmp_path / "old")
    assert load_bundle(folder, "onnx").guard is None  # still works, says the guard is absent
    cfg = GuardConfig(augmented_views=1, max_flag_rate=0.05)
    record = guard_bundle(folder, None, cfg)  # the manifest it was trained on, recorded
    assert "exporting model.onnx again" in caplog.text
    assert record.fitted_on["augmented_views"] == 1 and record.validation["flagged"] <= 0.05
    onnx = load_bundle(folder, "onnx")
    assert onnx.model.has_features and onnx.guard is not None
    with pytest.raises(PneumoniaError, match="already has a guard"):
        guard_bundle(folder, None, cfg)
    meta = json.loads((folder / "model.json").read_text())
    meta["training"]["config"]["data"]["manifest"] = str(tmp_path / "gone.csv")
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(PneumoniaError, match="pass --data MANIFEST"):
        guard_bundle(folder, None, cfg, force=True)
    again = guard_bundle(folder, tiny_run.cfg.data.manifest, cfg, force=True)
    assert again.threshold == pytest.approx(record.threshold, rel=1e-3)  # same seed, same fit
    assert again.fitted_on["rendered_views"] is True  # the default: views rendered again
    plain = cfg.model_copy(update={"rendered_views": False})
    unrendered = guard_bundle(folder, tiny_run.cfg.data.manifest, plain, force=True)
    assert unrendered.fitted_on["rendered_views"] is False
    assert unrendered.threshold != pytest.approx(again.threshold, rel=1e-6)  # other views


def test_the_onnx_guard_answers_like_the_torch_one(exported: Path) -> None:
    from pneumonia.inference.predictions import score_squares

    folder = exported
    squares = [
        np.random.default_rng(i).integers(0, 256, (32, 32), dtype=np.uint8) for i in range(4)
    ]
    on_torch = score_squares(load_bundle(folder, "torch"), squares)
    on_onnx = score_squares(load_bundle(folder, "onnx"), squares)
    np.testing.assert_allclose(on_onnx, on_torch, rtol=1e-3, atol=1e-4)


def test_the_layout_check_tells_xrays_from_their_negatives_and_pieces() -> None:
    from pneumonia.core.config import GuardConfig
    from pneumonia.core.preprocess import Preprocessing
    from pneumonia.data.ood_corpus import cropped, inverted
    from pneumonia.data.synthetic import synthetic_xray
    from pneumonia.inference.guard import thumbnails
    from pneumonia.training.guard_fit import fit_layout

    rng = np.random.default_rng(0)
    contract = Preprocessing(image_size=48, resize="stretch")
    xrays = [
        contract.square(synthetic_xray(("NORMAL", "PNEUMONIA")[i % 2], 96, 120, rng))
        for i in range(240)
    ]
    train, val, test = np.stack(xrays[:120]), np.stack(xrays[120:200]), xrays[200:]
    cfg = GuardConfig(max_flag_rate=0.05)
    layout, record = fit_layout(thumbnails(train), train, contract, val, cfg)
    assert record["validation_flagged"] <= 0.025 + 1e-9
    held_out = layout.logits(test) > layout.threshold
    negatives = layout.logits([inverted(x, rng) for x in test]) > layout.threshold
    pieces = layout.logits([contract.square(cropped(x, rng)) for x in test]) > layout.threshold
    assert held_out.mean() <= 0.1 and negatives.mean() >= 0.9 and pieces.mean() >= 0.6
