from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TinyRun
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.models import create_model, list_models
from pneumonia.serving.explain import (
    METHODS,
    cam_to_original,
    class_activation,
    explain_image,
    explain_paths,
    overlay_image,
)


@pytest.mark.parametrize("name", list_models())
def test_every_registry_model_has_a_cam_layer(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(2, 1, 64, 64)
    cam = class_activation(model, name, x, target=1, method="gradcam")
    assert cam.shape == (2, 64, 64) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1


def test_pad_geometry_maps_back_without_the_bars() -> None:
    cam = np.zeros((32, 32), np.float32)
    cam[8:16, 0:16] = 1.0  # top-left quarter of the content: rows 8..24 hold the image
    full = cam_to_original(cam, 40, 80, "pad")
    assert full.shape == (40, 80)
    assert full[:18, :38].mean() > 0.9 and full[22:, 42:].max() == 0


def test_crop_geometry_leaves_the_unseen_parts_cold() -> None:
    cam = np.ones((32, 32), np.float32)
    full = cam_to_original(cam, 80, 40, "crop")  # the square saw rows 20..60 only
    assert full.shape == (80, 40)
    assert full[:18].max() == 0 and full[62:].max() == 0 and full[24:56].min() == 1


def test_stretch_geometry_maps_the_square_over_the_whole_image() -> None:
    cam = np.zeros((32, 32), np.float32)
    cam[:, :16] = 1.0  # the left half of the square is the left half of the original
    full = cam_to_original(cam, 40, 80, "stretch")
    assert full.shape == (40, 80)
    assert full[:, :38].min() > 0.9 and full[:, 42:].max() < 0.1


@pytest.mark.parametrize("method", list(METHODS))
def test_overlay_sits_on_the_original_at_its_own_size(
    tiny_run: TinyRun, tmp_path: Path, method: str
) -> None:
    bundle = load_bundle(tiny_run.bundle)
    path = save_image(
        synthetic_xray("PNEUMONIA", 50, 70, np.random.default_rng(0)), tmp_path / "x.png"
    )
    expl = explain_image(bundle, str(path), method)
    assert expl.gray.shape == expl.cam.shape == (50, 70)
    assert expl.cam.min() >= 0 and expl.cam.max() <= 1
    assert expl.label == ("PNEUMONIA" if expl.probability >= bundle.threshold else "NORMAL")
    picture = overlay_image(expl, bundle.threshold)
    assert picture.width == 140 and picture.height > 50
    left = np.asarray(picture)[picture.height - 50 :, :70, 0]
    assert np.array_equal(left, expl.gray)  # the untouched original beside the overlay


def test_bad_files_are_reported_and_the_rest_explained(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    good = save_image(
        synthetic_xray("NORMAL", 40, 40, np.random.default_rng(1)), tmp_path / "g.png"
    )
    bad = tmp_path / "bad.jpeg"
    bad.write_text("text")
    results = explain_paths(bundle, [str(bad), str(good)], tmp_path / "out")
    assert results[0][1] is None and "not an image" in results[0][2]
    written = Path(results[1][2])
    assert written.is_file() and Image.open(written).size[0] == 80
