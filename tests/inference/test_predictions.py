"""Prediction through the input door: batches, globs, folders, and bad files that stay rows."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TinyRun, band
from pneumonia.core.errors import DataError
from pneumonia.core.preprocess import Preprocessing, fit_to_square, to_array
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import (
    expand_inputs,
    load_square,
    logits,
    predict_paths,
    shift,
    tta_views,
)
from pneumonia.modeling.network import to_tensor


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    for i, mode in enumerate(("L", "RGB", "RGBA", "I;16")):
        suffix = ".png" if mode in ("RGBA", "I;16") else ".jpg"
        save_image(synthetic_xray("PNEUMONIA", 40, 50, rng), tmp_path / f"img{i}{suffix}", mode)
    (tmp_path / "corrupt.jpeg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (tmp_path / "notes.txt").write_text("not an image, not picked up from a folder")
    return tmp_path


def test_mixed_folder_with_a_corrupt_file(tiny_run: TinyRun, mixed: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    results = predict_paths(
        bundle, expand_inputs([str(mixed)]), batch_size=2, workers=1, show=False
    )
    by_name = {Path(r.path).name: r for r in results}
    assert set(by_name) == {"img0.jpg", "img1.jpg", "img2.png", "img3.png", "corrupt.jpeg"}
    assert by_name["corrupt.jpeg"].probability is None and by_name["corrupt.jpeg"].error
    good = [r for r in results if r.error is None]
    assert len(good) == 4 and all(0 <= r.probability <= 1 for r in good)  # type: ignore[operator]
    for r in good:
        expected = "PNEUMONIA" if r.probability >= bundle.threshold else "NORMAL"  # type: ignore[operator]
        assert r.label == expected


def test_probabilities_equal_the_model_on_the_contract(tiny_run: TinyRun, mixed: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    path = str(mixed / "img0.jpg")
    [result] = predict_paths(bundle, [path], workers=1, show=False)
    square = load_square((path, Preprocessing(image_size=32)))
    assert isinstance(square, np.ndarray) and square.shape == (32, 32)
    with torch.inference_mode():
        logit = bundle.model(to_tensor(square[None], bundle.contract)).item()
    direct = 1 / (1 + np.exp(-logit / bundle.temperature))
    assert result.probability == pytest.approx(direct, abs=1e-6)


def test_missing_file_is_a_row_not_a_crash(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    [row] = predict_paths(bundle, [str(tmp_path / "gone.png")], workers=1, show=False)
    assert row.error == "file not found"


def test_expand_inputs(mixed: Path) -> None:
    assert len(expand_inputs([str(mixed / "*.png")])) == 2
    both = expand_inputs([str(mixed / "img0.jpg"), str(mixed)])
    assert len(both) == len(set(both)) == 5
    with pytest.raises(DataError, match="no files match"):
        expand_inputs([str(mixed / "*.dcm")])
    (mixed / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        expand_inputs([str(mixed / "empty")])
    assert fit_to_square(np.zeros((10, 20), np.uint8), 8).shape == (8, 8)


def test_shift_moves_pixels_and_fills_the_gap() -> None:
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 1.0
    down = shift(x, 1, 0, fill=-3.0)
    assert down[0, 0, 3, 2] == 1.0 and down[0, 0, 2, 2] == 0.0
    assert (down[0, 0, 0] == -3.0).all() and (down[0, 0, 1:, :] != -3.0).all()
    left = shift(x, 0, -2, fill=-3.0)
    assert left[0, 0, 2, 0] == 1.0 and (left[0, 0, :, 3:] == -3.0).all()


def test_tta_views_are_the_image_and_four_shifts(tiny_run: TinyRun) -> None:
    contract = load_bundle(tiny_run.bundle).contract
    x = np.random.default_rng(0).normal(size=(2, 1, 50, 50)).astype(np.float32)
    views = tta_views(x, contract)
    assert len(views) == 5 and views[0] is x
    assert all(v.shape == x.shape and v.dtype == x.dtype for v in views)
    black = np.float32((0 - contract.mean) / contract.std)
    assert np.array_equal(views[1][..., :48, :], x[..., 2:, :])  # up by 4% of 50 = 2 pixels
    assert (views[1][..., 48:, :] == black).all()
    assert len({float(v.sum()) for v in views}) == 5


def test_tta_logit_is_the_mean_over_views(tiny_run: TinyRun, mixed: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    squares = [
        load_square((str(mixed / f"img{i}.jpg"), Preprocessing(image_size=32))) for i in (0, 1)
    ]
    with_tta = logits(bundle, squares, tta=True)  # type: ignore[arg-type]
    x = to_array(np.stack(squares), bundle.contract)  # type: ignore[arg-type]
    with torch.inference_mode():
        per_view = torch.stack(
            [bundle.model(torch.from_numpy(v)).reshape(-1) for v in tta_views(x, bundle.contract)]
        )
    assert with_tta == pytest.approx(per_view.mean(0).numpy(), abs=1e-6)
    assert not np.allclose(with_tta, logits(bundle, squares))  # type: ignore[arg-type]


def test_tta_unlike_the_threshold_warns(
    tiny_run: TinyRun, mixed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = load_bundle(tiny_run.bundle)
    predict_paths(bundle, [str(mixed / "img0.jpg")], workers=1, show=False)
    assert "TTA" not in caplog.text
    predict_paths(bundle, [str(mixed / "img0.jpg")], workers=1, show=False, tta=True)
    assert "tuned without TTA and is applied with it" in caplog.text


def test_a_bundle_without_validation_results_is_named(
    tiny_run: TinyRun, mixed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import shutil

    from pneumonia.core.errors import BundleError

    folder = tmp_path / "b"
    shutil.copytree(tiny_run.bundle, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["validation"] = {}
    (folder / "model.json").write_text(json.dumps(meta))
    bundle = load_bundle(folder)
    [row] = predict_paths(bundle, [str(mixed / "img0.jpg")], workers=1, show=False)
    assert row.probability is not None
    assert "records no validation results" in caplog.text and "pneumonia threshold" in caplog.text
    del meta["threshold"]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"threshold: Field required"):
        load_bundle(folder)  # never a silent 0.5


def test_an_answer_in_the_bundles_band_is_borderline_and_none_without_one(
    tiny_run: TinyRun, mixed: Path, tmp_path: Path
) -> None:
    import math
    import shutil

    folder = tmp_path / "b"
    shutil.copytree(tiny_run.bundle, folder)
    bundle = load_bundle(folder)
    paths = [str(mixed / "img0.jpg"), str(mixed / "corrupt.jpeg")]
    plain = predict_paths(bundle, paths, workers=1, show=False)
    assert [r.borderline for r in plain] == [None, None]
    p = plain[0].probability
    assert p is not None
    gap = abs(math.log(p / (1 - p)) - math.log(bundle.threshold / (1 - bundle.threshold)))
    for width, expected in ((gap + 0.01, True), (gap * 0.5, False)):
        rows = predict_paths(load_bundle(band(folder, width)), paths, workers=1, show=False)
        assert rows[0].borderline is expected and rows[0].label == plain[0].label
        assert rows[1].borderline is None and rows[1].error is not None
