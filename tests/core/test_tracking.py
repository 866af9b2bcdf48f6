from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import TinyRun, prepare_tiny, tiny_config
from pneumonia.core.config import TrackingConfig
from pneumonia.core.options import Scoring
from pneumonia.core.tracking import (
    DEFAULT_URI,
    TrackingError,
    artifact_location,
    flatten,
    tracking_uri,
)
from pneumonia.evaluation.evaluate import evaluate
from pneumonia.inference.loading import load_bundle
from pneumonia.training.train import train


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(TrackingConfig()) == DEFAULT_URI == "sqlite:///mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert tracking_uri(TrackingConfig()) == "sqlite:///env.db"
    assert tracking_uri(TrackingConfig(uri="sqlite:///cfg.db")) == "sqlite:///cfg.db"


def test_artifacts_live_beside_a_sqlite_store(tmp_path: Path) -> None:
    location = artifact_location(f"sqlite:///{tmp_path}/store/runs.db")
    assert location == (tmp_path / "store" / "mlartifacts").as_uri()
    assert artifact_location("http://127.0.0.1:5000") is None


def test_flatten_nests_with_dots() -> None:
    assert flatten({"train": {"lr": 0.1, "opt": {"m": 0.9}}, "seed": 1}) == {
        "train.lr": 0.1,
        "train.opt.m": 0.9,
        "seed": 1,
    }


def test_train_run_lands_in_a_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    cfg = tiny_config(tmp_path, "tracking.enabled=true", f"tracking.uri={uri}")
    prepare_tiny(tmp_path, cfg)
    summary = train(cfg, command="pytest")

    client = MlflowClient(uri)
    run = client.get_run(summary["mlflow_run"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert run.data.params["model.name"] == "cnn_small"
    assert run.data.params["preprocess.image_size"] == "32"
    history = client.get_metric_history(run.info.run_id, "val_auc")
    assert [m.step for m in history] and len(history) == summary["epochs_run"]
    assert run.data.metrics["operating/roc_auc"] == pytest.approx(summary["validation"]["roc_auc"])
    assert {"curves.png", "metrics.csv", "config.yaml", "bundle"} <= _artifacts(
        client, run.info.run_id
    )
    assert "bundle/model.safetensors" in _artifacts(client, run.info.run_id, "bundle")
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(tmp_path)


def test_evaluate_run_lands_in_a_sqlite_store(tiny_run: TinyRun, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    tracking = TrackingConfig(uri=uri, experiment="evals")
    bundle = load_bundle(tiny_run.bundle)
    result = evaluate(
        bundle,
        tiny_run.data,
        "test",
        tmp_path / "ev",
        Scoring(workers=1, show=False, n_boot=20, tracking=tracking),
    )

    client = MlflowClient(uri)
    run = client.get_run(result["mlflow_run"])
    assert client.get_experiment(run.info.experiment_id).name == "evals"
    assert run.data.params["split"] == "test" and run.data.params["tta"] == "False"
    assert run.data.metrics["sensitivity"] == pytest.approx(result["metrics"]["sensitivity"])
    assert run.data.metrics["ece"] == pytest.approx(result["calibration"]["ece"])
    assert {"metrics.json", "predictions.csv", "roc.png"} <= _artifacts(client, run.info.run_id)


def test_off_means_no_store(
    tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bundle = load_bundle(tiny_run.bundle)
    off = TrackingConfig(enabled=False)
    result = evaluate(
        bundle,
        tiny_run.data,
        "test",
        tmp_path / "ev",
        Scoring(workers=1, show=False, n_boot=0, tracking=off),
    )
    assert result["mlflow_run"] is None
    assert not list(tmp_path.glob("mlruns*")) and not (tmp_path / "mlartifacts").exists()


def test_unusable_store_stops_training_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/file/mlruns.db"
    cfg = tiny_config(tmp_path, "tracking.enabled=true", f"tracking.uri={uri}")
    prepare_tiny(tmp_path, cfg)
    with pytest.raises(TrackingError, match=r"tracking\.enabled=false"):
        train(cfg)
    assert not (tmp_path / "runs" / "tiny" / "checkpoints").exists()


def test_a_run_that_fails_after_fitting_is_marked_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pneumonia.training.train as train_module

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    cfg = tiny_config(tmp_path, "tracking.enabled=true", f"tracking.uri={uri}", "train.epochs=1")
    prepare_tiny(tmp_path, cfg)
    monkeypatch.setattr(train_module, "save_bundle", broken)
    with pytest.raises(OSError, match="disk full"):
        train(cfg)
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("pneumonia").experiment_id])
    assert run.info.status == "FAILED"
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt").is_file()
