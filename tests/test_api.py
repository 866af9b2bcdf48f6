"""The public API: the ten-line example of docs/api.md runs as it stands, and the names it
documents are the ones `pneumonia` exports."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, tiny_config
from pneumonia.core import LABELS
from pneumonia.core.config import dump_config
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import make_manifest, write_manifest
from pneumonia.data.synthetic import make_dataset, save_image, synthetic_xray

EXAMPLE = re.compile(r"<!-- example:.*?-->\n```python\n(.*?)```", re.DOTALL)


def api_example() -> str:
    """The code block the API page marks as the example."""
    (code,) = EXAMPLE.findall((REPO / "docs" / "api.md").read_text())
    return code


def test_the_example_is_ten_lines_of_public_names_only() -> None:
    code = api_example()
    assert len(code.strip().splitlines()) <= 10
    imports = [line for line in code.splitlines() if "import" in line]
    assert imports == ["from pneumonia import evaluate, load_bundle, load_config, predict, train"]


@pytest.mark.slow
def test_the_api_page_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a folder laid out as the example expects: scans (one of them broken), a split
    manifest and its cache, and configs/default.yaml shrunk as every training test shrinks it."""
    monkeypatch.chdir(tmp_path)
    scans = tmp_path / "scans"
    for i, label in enumerate(["NORMAL", "PNEUMONIA"]):
        gray = synthetic_xray(label, 96, 80, np.random.default_rng(i))
        save_image(gray, scans / f"{label.lower()}.png")
    (scans / "broken.png").write_bytes(b"not an image")
    cfg = tiny_config(tmp_path / "work")  # its manifest: work/manifest.csv, as the example's
    per = {"train": {"NORMAL": 24, "PNEUMONIA": 40}}
    root = make_dataset(tmp_path / "data", "kaggle", per, size_range=(32, 48), seed=0)
    rows, _ = make_manifest(root, cfg.data.val_fraction, cfg.data.seed, workers=1, show=False)
    write_manifest(rows, cfg.data.manifest, force=True)
    prepare_cache(rows, cfg.data.cache_dir, cfg.preprocess, workers=1, show=False)
    (tmp_path / "configs").mkdir()
    dump_config(cfg, tmp_path / "configs" / "default.yaml")

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(api_example(), "docs/api.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    by_file = {Path(line.split()[0]).name: line.split(maxsplit=4) for line in lines[:3]}
    assert set(by_file) == {"normal.png", "pneumonia.png", "broken.png"}
    assert by_file["broken.png"][1:4] == ["None"] * 3 and by_file["broken.png"][4] != "None"
    for name in ("normal.png", "pneumonia.png"):
        _, label, probability, _, error = by_file[name]
        assert label in LABELS and 0 <= float(probability) <= 1 and error == "None"
    assert (tmp_path / "reports" / "api" / "metrics.json").is_file()
    assert 0 <= float(lines[3].split()[0]) <= 1
    bundle = Path(lines[-1].split()[0])
    assert (bundle / "model.json").is_file() and bundle.is_relative_to(tmp_path)


def test_pneumonia_exports_the_documented_names_lazily() -> None:
    """`import pneumonia` alone stays light: the API (and torch) load on first use."""
    code = (
        "import sys, pneumonia\n"
        "light = 'pneumonia.api' not in sys.modules and 'torch' not in sys.modules\n"
        "from pneumonia import evaluate, load_bundle, load_config, predict, train\n"
        "names = (evaluate, load_bundle, load_config, predict, train)\n"
        "print(light, all(callable(f) for f in names))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "True"], result.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import pneumonia

        pneumonia.nothing  # noqa: B018
