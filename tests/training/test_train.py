"""`train(cfg)`: the run folder, seeds, resume after an interruption, the LR finder."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from PIL import Image

from conftest import TinyRun, paired_config, prepare_tiny, tiny_config, write_originals
from pneumonia.core.config import Config, dump_config
from pneumonia.core.errors import DataError, PneumoniaError
from pneumonia.evaluation.operating import OperatingPointError
from pneumonia.inference.loading import load_bundle
from pneumonia.inference.runtime import run_network
from pneumonia.modeling.models import ModelError
from pneumonia.training import train as train_module
from pneumonia.training.train import train


def test_run_folder_holds_everything(tiny_run: TinyRun) -> None:
    run = Path(tiny_run.summary["run_dir"])
    assert Config.model_validate(yaml.safe_load((run / "config.yaml").read_text())) == tiny_run.cfg
    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(0 <= float(r["val_auc"]) <= 1 and float(r["train_loss"]) > 0 for r in rows)
    assert "val_subtype_auc" not in rows[0]  # only runs with the subtype head have it
    assert Image.open(run / "curves.png").size[0] > 500
    checkpoints = {p.name for p in (run / "checkpoints").iterdir()}
    assert "last.ckpt" in checkpoints and any(n.startswith("best-") for n in checkpoints)
    summary = json.loads((run / "summary.json").read_text())
    assert summary == tiny_run.summary
    assert summary["epochs_run"] == 2 and summary["best_epoch"] in (0, 1)
    best_auc = max(float(r["val_auc"]) for r in rows)
    assert summary["validation"]["roc_auc"] == pytest.approx(best_auc, abs=1e-6)
    meta = json.loads((run / "bundle" / "model.json").read_text())
    assert meta["training"]["command"] == "pytest"
    assert meta["data"]["patients"]["val"] > 0


def test_same_seed_same_model(tmp_path: Path, tiny_run: TinyRun) -> None:
    cfg = tiny_config(tiny_run.cfg.train.out_dir.parent, "train.run_name=again")
    assert train(cfg)["validation"] == tiny_run.summary["validation"]


def test_existing_run_is_not_overwritten(tiny_run: TinyRun) -> None:
    with pytest.raises(PneumoniaError, match="--force"):
        train(tiny_run.cfg)


def test_unknown_model_fails_before_writing(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model.name=resnet19")
    with pytest.raises(ModelError, match="unknown model 'resnet19'"):
        train(cfg)
    assert not cfg.train.out_dir.exists()


def test_missing_pairs_fail_before_writing(tmp_path: Path) -> None:
    pairs = ["train.consistency=1.0", f"data.pairs.originals={tmp_path / 'none'}"]
    with pytest.raises(DataError, match=r"none: no such folder \(data\.pairs\.originals"):
        train(tiny_config(tmp_path, *pairs))
    (tmp_path / "none").mkdir()
    listed = f"data.pairs.only={tmp_path / 'names.txt'}"
    with pytest.raises(DataError, match=r"names\.txt: no such file"):
        train(tiny_config(tmp_path, *pairs, listed))
    assert not (tmp_path / "runs").exists()


def test_one_class_validation_is_refused(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    prepare_tiny(tmp_path, cfg)
    rows = (tmp_path / "manifest.csv").read_text().splitlines()
    kept = [r for r in rows if not (",val," in r and ",NORMAL," in r)]
    (tmp_path / "manifest.csv").write_text("\n".join(kept) + "\n")
    with pytest.raises(DataError, match="val split needs both classes"):
        train(cfg)


def test_too_few_validation_positives_fail_before_training(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "operating.rule=target_sensitivity")
    prepare_tiny(tmp_path, cfg)
    with pytest.raises(OperatingPointError, match=r"needs at least 100"):
        train(cfg)
    assert not (tmp_path / "runs" / "tiny" / "checkpoints").exists()


def test_target_sensitivity_rule_is_met_on_validation(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path, "operating.rule=target_sensitivity", "operating.target_sensitivity=0.9"
    )
    prepare_tiny(tmp_path, cfg)
    summary = train(cfg)
    assert summary["threshold_rule"] == "target_sensitivity"
    assert summary["validation"]["sensitivity"] >= 0.9


class Crash(Callback):
    """Stands in for a killed process: fails when the second epoch starts."""

    def on_train_epoch_start(self, trainer: object, module: object) -> None:
        if getattr(trainer, "current_epoch", 0) == 1:
            raise RuntimeError("power cut")


def test_resume_after_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_config(tmp_path, "train.epochs=3", "train.early_stopping_patience=5")
    prepare_tiny(tmp_path, cfg)
    original = train_module._callbacks

    def crashing(*args: object) -> object:
        best, callbacks = original(*args)  # type: ignore[arg-type]
        return best, [*callbacks, Crash()]

    monkeypatch.setattr(train_module, "_callbacks", crashing)
    with pytest.raises(RuntimeError, match="power cut"):
        train(cfg)
    run = tmp_path / "runs" / "tiny"
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "bundle").exists()
    monkeypatch.setattr(train_module, "_callbacks", original)
    summary = train(cfg, resume=run)
    assert summary["epochs_run"] == 3
    with (run / "metrics.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [0, 1, 2]
    assert (run / "bundle" / "model.safetensors").is_file()


def test_last_checkpoint_is_the_last_epoch_even_without_a_new_best(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path, "train.epochs=3", "train.schedule=constant", "train.lr=0.01", "data.batch_size=8"
    )
    prepare_tiny(tmp_path, cfg)
    summary = train(cfg)
    checkpoints = Path(summary["run_dir"]) / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert summary["best_epoch"] < 2  # this seed's last epoch is not a new best
    assert last["epoch"] == 2
    assert len(list(checkpoints.glob("best-*.ckpt"))) == 1


def test_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(PneumoniaError, match=r"last\.ckpt"):
        train(tiny_config(tmp_path), resume=tmp_path)


def test_lr_finder_sets_the_learning_rate(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "train.lr_find=true", "data.batch_size=4")
    prepare_tiny(tmp_path, cfg)
    summary = train(cfg)
    assert summary["lr"] != cfg.train.lr
    assert Image.open(Path(summary["run_dir"]) / "lr_find.png").size[0] > 100


def _train_process(cfg_file: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pneumonia", "train", *extra]
    command += [] if "--resume" in extra else ["--config", str(cfg_file)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _first_epoch_recorded(run: Path) -> bool:
    """The first checkpoint is written and the first epoch's last metric is in the log.

    Lightning writes the checkpoint of an epoch a moment before that epoch's metrics reach
    the CSV log; a kill in between loses the epoch's row of `metrics.csv` (docs/monitoring.md,
    "Faults"), so the kill waits for both."""
    from pneumonia.evaluation.plots import read_epoch_metrics

    logs = sorted((run / "logs").glob("part*/metrics.csv"))
    if not (run / "checkpoints" / "last.ckpt").is_file() or not logs:
        return False
    try:
        return any(e == 0 for e, _ in read_epoch_metrics(logs).get("train_acc", []))
    except (OSError, ValueError, KeyError):  # the log is being written
        return False


@pytest.mark.slow
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    """A real kill (SIGKILL: no handler runs) after the first checkpoint, then `--resume`:
    the same epochs, threshold, validation metrics and weights as a run never stopped."""
    base = ["train.epochs=5", "train.early_stopping_patience=10", "data.batch_size=4"]
    cfg = tiny_config(tmp_path, *base)
    prepare_tiny(tmp_path, cfg)
    files = {}
    for name in ("killed", "whole"):
        files[name] = dump_config(
            cfg.model_copy(update={"train": cfg.train.model_copy(update={"run_name": name})}),
            tmp_path / f"{name}.yaml",
        )
    killed = tmp_path / "runs" / "killed"
    process = _train_process(files["killed"])
    deadline = time.monotonic() + 240
    while not _first_epoch_recorded(killed):
        assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # killed before the run finished, whenever the kill lands after the first epoch's record
    assert process.returncode == -signal.SIGKILL and not (killed / "bundle").exists()
    assert not (killed / "summary.json").exists()
    for proc in (
        _train_process(files["killed"], "--resume", str(killed)),
        _train_process(files["whole"]),
    ):
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
    summaries = [
        json.loads((tmp_path / "runs" / n / "summary.json").read_text())
        for n in ("killed", "whole")
    ]
    for key in ("epochs_run", "best_epoch", "threshold", "validation"):
        assert summaries[0][key] == summaries[1][key], key
    weights = [
        json.loads((tmp_path / "runs" / n / "bundle" / "model.json").read_text())["files"][
            "model.safetensors"
        ]
        for n in ("killed", "whole")
    ]
    assert weights[0]["sha256"] == weights[1]["sha256"]
    tables = [
        list(csv.DictReader((tmp_path / "runs" / n / "metrics.csv").open()))
        for n in ("killed", "whole")
    ]
    assert [r["epoch"] for r in tables[0]] == [r["epoch"] for r in tables[1]]
    assert tables[0] == tables[1]  # every epoch's row, the killed one's from its first log


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_bundle(tmp_path: Path) -> None:
    """DDP with the gloo backend: `pneumonia train` starts a second process, both train on
    their half of each epoch, validation is gathered, and the first process alone writes
    the bundle (with its guard) and reports."""
    cfg = tiny_config(tmp_path, "train.accelerator=cpu", "train.devices=2", "train.epochs=2")
    prepare_tiny(tmp_path, cfg)
    process = _train_process(dump_config(cfg, tmp_path / "ddp.yaml"))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]
    run = tmp_path / "runs" / "tiny"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["epochs_run"] == 2 and summary["processes"] == 2
    assert sorted(p.name for p in (run / "bundle").iterdir()) == [
        "MODEL_CARD.md", "guard.safetensors", "model.json", "model.safetensors"
    ]  # fmt: skip
    assert json.loads((run / "bundle" / "model.json").read_text())["training"]["device"] == "cpu"
    assert err.decode().count("epoch 1:") == 1  # logged once, not once per process


def test_the_bundle_is_exported_and_its_guard_fitted_on_onnx(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_config(tmp_path, "train.export_onnx=true", "train.epochs=1")
    prepare_tiny(tmp_path, cfg)
    with caplog.at_level("INFO"):
        summary = train(cfg)
    auto, torch_bundle = (load_bundle(Path(summary["bundle"]), b) for b in ("auto", "torch"))
    assert summary["onnx"] and auto.backend == "onnx"
    assert summary["guard"] is not None and "on the onnx backend" in caplog.text
    x = torch.randn(5, 1, 32, 32).numpy()
    assert abs(run_network(auto.model, x) - run_network(torch_bundle.model, x)).max() < 1e-4


def test_a_failed_export_keeps_the_trained_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_config(tmp_path, "train.export_onnx=true", "train.epochs=1")
    prepare_tiny(tmp_path, cfg)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr("pneumonia.modeling.export.export_onnx", broken)
    with caplog.at_level("INFO"):
        summary = train(cfg)
    assert not summary["onnx"] and load_bundle(Path(summary["bundle"])).backend == "torch"
    assert "exporter crashed" in caplog.text and "pneumonia export" in caplog.text
    assert summary["guard"] is not None and "on the torch backend" in caplog.text


def test_a_run_with_pairs_logs_their_consistency(tmp_path: Path) -> None:
    from pneumonia.data.split import read_manifest

    cfg = paired_config(tmp_path)
    prepare_tiny(tmp_path, cfg)
    rows = [r for r in read_manifest(cfg.data.manifest) if r.split == "train"]
    write_originals(rows[:8], tmp_path / "originals")
    summary = train(cfg)
    with (Path(summary["run_dir"]) / "metrics.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 2 and all(float(r["train_consistency"]) > 0 for r in table)
    meta = load_bundle(summary["bundle"]).meta
    assert meta.training["config"]["train"]["consistency"] == 1.0
