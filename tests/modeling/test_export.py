import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TinyRun
from pneumonia.core.bundle import ONNX
from pneumonia.core.config import OperatingConfig
from pneumonia.core.errors import BundleError, PneumoniaError
from pneumonia.core.options import Scoring
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.evaluation.tune import retune
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.predictions import predict_paths
from pneumonia.inference.runtime import OnnxModel
from pneumonia.modeling.export import export_onnx, parity_inputs


@pytest.fixture(scope="module")
def exported(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("onnx") / "bundle"
    shutil.copytree(tiny_run.bundle, folder)
    export_onnx(load_bundle(folder))
    return folder


def test_export_records_file_and_parity(exported: Path) -> None:
    bundle = load_bundle(exported)
    info = bundle.meta.exports["onnx"]
    assert (exported / ONNX).is_file() and ONNX in bundle.meta.files
    assert info["max_abs_diff_probability"] < 1e-4 and info["images"] == 6
    assert f"- ONNX: `{ONNX}` (opset 17" in (exported / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch_matches_pytorch(exported: Path, batch: int) -> None:
    bundle = load_bundle(exported)
    x = parity_inputs(bundle)[:1].repeat(batch, 1, 1, 1) + torch.randn(batch, 1, 1, 1) * 0.1
    out = OnnxModel(exported / ONNX)(x.numpy())
    with torch.inference_mode():
        ref = bundle.model(x).numpy()
    assert out.shape == (batch, 1) and np.allclose(out, ref, atol=1e-4)


def test_predictions_agree_between_backends(exported: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    paths = [
        str(save_image(synthetic_xray(lab, 40, 52, rng), tmp_path / f"{i}.png"))
        for i, lab in enumerate(("NORMAL", "PNEUMONIA", "PNEUMONIA"))
    ]
    torch_bundle = load_bundle(exported)
    onnx_bundle = load_bundle(exported, "onnx")
    assert isinstance(onnx_bundle.model, OnnxModel) and onnx_bundle.backend == "onnx"
    a = predict_paths(torch_bundle, paths, workers=1, show=False)
    b = predict_paths(onnx_bundle, paths, workers=1, show=False, tta=True)
    c = predict_paths(torch_bundle, paths, workers=1, show=False, tta=True)
    assert all(abs(x.probability - y.probability) < 1e-4 for x, y in zip(b, c, strict=True))  # type: ignore[operator]
    assert [x.probability for x in a] != [x.probability for x in c]


def test_refusals_name_the_problem(tiny_run: TinyRun, exported: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"pneumonia export .* --onnx"):
        load_bundle(tiny_run.bundle, "onnx")
    with pytest.raises(PneumoniaError, match=r"already exists; pass --force"):
        export_onnx(load_bundle(exported))
    with pytest.raises(PneumoniaError, match=r"needs the PyTorch network"):
        export_onnx(load_bundle(exported, "onnx"), force=True)
    with pytest.raises(PneumoniaError, match=r"unknown backend 'tensorrt'"):
        load_bundle(exported, "tensorrt")
    altered = tmp_path / "altered"
    shutil.copytree(exported, altered)
    with (altered / ONNX).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"model\.onnx: altered"):
        load_bundle(altered, "onnx")
    with pytest.raises(BundleError, match=r"model\.onnx: altered"):
        load_bundle(altered, "auto")


def test_a_retuned_copy_keeps_its_onnx(tiny_run: TinyRun, exported: Path, tmp_path: Path) -> None:
    cfg = OperatingConfig(rule="youden")
    out = tmp_path / "tuned"
    retune(
        load_bundle(exported),
        tiny_run.cfg.data.manifest,
        "val",
        cfg,
        out,
        scoring=Scoring(workers=1, show=False),
    )
    assert load_bundle(out, "onnx").backend == "onnx"


def test_auto_takes_onnx_when_the_bundle_has_it(tiny_run: TinyRun, exported: Path) -> None:
    assert load_bundle(exported, "auto").backend == "onnx"
    assert load_bundle(exported).backend == "torch"  # the library default stays PyTorch
    plain = load_bundle(tiny_run.bundle, "auto")
    assert plain.backend == "torch" and not isinstance(plain.model, OnnxModel)


def test_same_padding_is_fixed_for_the_contract_size(tmp_path: Path) -> None:
    from timm.layers import Conv2dSame

    from pneumonia.modeling.export import static_padding
    from pneumonia.modeling.models import create_model

    model = create_model("efficientnet_lite0").eval()  # timm tf_ network: TF 'SAME' padding
    example = torch.zeros(1, 1, 64, 64)
    fixed = static_padding(model, example)
    assert any(isinstance(m, Conv2dSame) for m in model.modules())
    assert not any(isinstance(m, Conv2dSame) for m in fixed.modules())
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(fixed(x), model(x), atol=1e-5)
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(fixed, (example,), str(path), dynamo=False, input_names=["image"],
                      dynamic_axes={"image": {0: "batch"}}, opset_version=17)  # fmt: skip
    import onnx

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Conv" in ops and not ops & {"Shape", "Ceil"}  # no shape arithmetic left
