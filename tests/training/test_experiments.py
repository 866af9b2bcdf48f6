"""Every experiment config under configs/experiments/ trains, shrunk, on tiny synthetic data."""

from pathlib import Path

import pytest
import torch

from conftest import prepare_tiny, tiny_config
from pneumonia.core.config import Config, load_config
from pneumonia.inference.loading import load_bundle
from pneumonia.modeling.models import list_models
from pneumonia.training.train import train

EXPERIMENTS = sorted((Path(__file__).parents[2] / "configs" / "experiments").glob("*.yaml"))


def shrink(path: Path, tmp: Path) -> Config:
    """The experiment as written, with only data, size, length and outputs made tiny."""
    tiny = tiny_config(tmp)
    return load_config(
        path,
        [
            f"data.manifest={tiny.data.manifest}",
            f"data.cache_dir={tiny.data.cache_dir}",
            "data.batch_size=16",
            "data.num_workers=0",
            "data.val_fraction=0.25",
            "preprocess.image_size=32",
            "train.epochs=2",
            "train.limit_train_batches=2",
            "train.progress=false",
            f"train.out_dir={tmp / 'runs'}",
            f"train.run_name={path.stem}",
            "operating.rule=youden",
            "tracking.enabled=false",
            "audit.file=null",
        ],
    )


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("experiments")
    prepare_tiny(tmp, tiny_config(tmp))
    return tmp


def test_one_config_per_registry_family() -> None:
    names = [load_config(p).model.name for p in EXPERIMENTS]
    assert sorted(names) == list_models()
    assert [p.stem for p in EXPERIMENTS] == sorted(names)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_trains_on_tiny_data(path: Path, tiny_data: Path) -> None:
    written = load_config(path)
    cfg = shrink(path, tiny_data)
    assert (cfg.model, cfg.train.freeze_epochs) == (written.model, written.train.freeze_epochs)
    summary = train(cfg, command=f"pytest {path.name}")
    bundle = load_bundle(summary["bundle"])
    assert bundle.meta.architecture.name == written.model.name
    assert bundle.meta.training["config"]["model"]["pretrained"] == written.model.pretrained
    assert summary["epochs_run"] == 2 and 0 < bundle.threshold < 1
    with torch.inference_mode():
        out = bundle.model(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 1) and torch.isfinite(out).all()


STUDIES = sorted((Path(__file__).parents[2] / "configs" / "experiments").glob("*/*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[f"{p.parent.name}/{p.stem}" for p in STUDIES])
def test_study_candidates_are_valid_configs(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.name in list_models()
    assert path.read_text().startswith("#")  # each says what it changes and how to run it
