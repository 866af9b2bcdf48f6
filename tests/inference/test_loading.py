"""Loading: the backend chosen as `auto` says, and refused, naming the fix, when it cannot run."""

from pathlib import Path

import pytest

from conftest import TinyRun
from pneumonia.core.bundle import INT8, ONNX, read_meta
from pneumonia.core.errors import BundleError
from pneumonia.inference.loading import choose_backend, load_bundle
from pneumonia.inference.runtime import OnnxModel


def test_auto_takes_the_fastest_model_the_bundle_has(tiny_run: TinyRun, exported: Path) -> None:
    folder, meta = read_meta(None)  # the shipped model: its int8 copy failed its rule
    assert choose_backend(folder, meta, "auto") == "onnx"
    assert choose_backend(exported, read_meta(exported)[1], "auto") == "onnx"
    assert choose_backend(tiny_run.bundle, read_meta(tiny_run.bundle)[1], "auto") == "torch"
    shipped = load_bundle(None, "auto")
    assert isinstance(shipped.model, OnnxModel) and shipped.model.path.name == ONNX
    assert INT8 not in meta.files and meta.exports["int8"]["passed"] is False


def test_a_backend_the_bundle_lacks_is_refused_with_the_command_to_run(tiny_run: TinyRun) -> None:
    folder, meta = read_meta(tiny_run.bundle)
    with pytest.raises(BundleError, match=r"pneumonia export .* --onnx"):
        choose_backend(folder, meta, "onnx")
    with pytest.raises(BundleError, match="--int8 --data MANIFEST"):
        choose_backend(folder, meta, "int8")
    with pytest.raises(BundleError, match="unknown backend 'tpu'"):
        choose_backend(folder, meta, "tpu")
