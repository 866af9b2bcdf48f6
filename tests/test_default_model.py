"""The shipped default model: present, verified, small, and it reproduces its own card."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia.bundle import DEFAULT_BUNDLE, load_bundle
from pneumonia.evaluate import evaluate
from pneumonia.inference import predict_paths
from pneumonia.split import make_manifest, write_manifest
from pneumonia.synthetic import save_image, synthetic_xray


def test_default_bundle_loads_and_is_small() -> None:
    bundle = load_bundle(None)
    assert bundle.path == DEFAULT_BUNDLE
    assert bundle.meta.architecture.name == "efficientnet_lite0"
    size = sum(p.stat().st_size for p in DEFAULT_BUNDLE.iterdir())
    assert size < 20 * 2**20
    assert bundle.meta.validation["roc_auc"] >= 0.99
    assert (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text().startswith("# Model card")


def test_default_bundle_predicts(tmp_path: Path) -> None:
    image = save_image(
        synthetic_xray("NORMAL", 300, 260, np.random.default_rng(0)), tmp_path / "x.png"
    )
    [row] = predict_paths(load_bundle(None), [str(image)], workers=1, show=False)
    assert row.error is None and 0.0 <= row.probability <= 1.0  # type: ignore[operator]


@pytest.mark.shared
def test_default_bundle_reproduces_its_validation_metrics(
    shared_chest_xray: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(None)
    seed = bundle.meta.training["config"]["data"]["seed"]
    fraction = bundle.meta.training["config"]["data"]["val_fraction"]
    rows, _ = make_manifest(shared_chest_xray, fraction, seed, show=False)
    write_manifest(rows, tmp_path / "manifest.csv")
    result = evaluate(
        bundle, tmp_path / "manifest.csv", "val", tmp_path / "eval", show=False, n_boot=0
    )
    stored = bundle.meta.validation
    assert result["metrics"]["n"] == stored["n"]
    assert result["metrics"]["confusion_matrix"] == stored["confusion_matrix"]
    assert result["metrics"]["roc_auc"] == pytest.approx(stored["roc_auc"], abs=1e-4)
