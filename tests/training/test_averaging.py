"""EMA weight averaging: starts after the head-only stage, validated, checkpointed and shipped."""

from pathlib import Path

import pytest
import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback

from conftest import prepare_tiny, tiny_config
from pneumonia.inference.loading import load_bundle
from pneumonia.training import train as train_module
from pneumonia.training.train import train

HEAD = "model.head.2.weight"  # cnn_small's linear layer


class Recorder(Callback):
    """The head's weights after every optimizer step and as each validation saw them."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, torch.Tensor]] = []
        self.validated: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer: Trainer, module: LightningModule, *args: object) -> None:
        self.steps.append((trainer.current_epoch, module.state_dict()[HEAD].clone()))

    def on_validation_epoch_end(self, trainer: Trainer, module: LightningModule) -> None:
        self.validated.append(module.state_dict()[HEAD].clone())


def _manual_ema(steps: list[tuple[int, torch.Tensor]], decay: float, start: int) -> torch.Tensor:
    average: torch.Tensor | None = None
    for epoch, w in steps:
        if epoch >= start:
            average = w.clone() if average is None else decay * average + (1 - decay) * w
    assert average is not None
    return average


def test_ema_is_validated_checkpointed_and_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decay = 0.6
    cfg = tiny_config(
        tmp_path,
        "train.epochs=3",
        "train.freeze_epochs=1",
        "train.early_stopping_patience=5",
        "train.weight_averaging=ema",
        f"train.ema_decay={decay}",
        "data.batch_size=8",
        "train.schedule=constant",  # the weights keep moving, so the average differs from them
        "train.lr=0.01",
    )
    prepare_tiny(tmp_path, cfg)
    recorder = Recorder()
    original = train_module._callbacks

    def recording(*args: object) -> object:
        best, callbacks = original(*args)  # type: ignore[arg-type]
        return best, [recorder, *callbacks]

    monkeypatch.setattr(train_module, "_callbacks", recording)
    summary = train(cfg)
    steps = recorder.steps
    last_raw = steps[-1][1]
    # epoch 0 (head only) validates the weights being trained, not an empty average
    end_of_epoch0 = [w for e, w in steps if e == 0][-1]
    assert torch.equal(recorder.validated[0], end_of_epoch0)
    # later epochs validate the EMA of the steps from epoch 1 on
    ema = _manual_ema(steps, decay, start=1)
    assert torch.allclose(recorder.validated[-1], ema, atol=1e-6)
    assert not torch.allclose(ema, last_raw, atol=1e-4)
    checkpoint = torch.load(
        Path(summary["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert torch.allclose(checkpoint["state_dict"][HEAD], ema, atol=1e-6)
    assert torch.equal(checkpoint["current_model_state"][HEAD], last_raw)
    # the bundle ships what was validated at the best epoch
    shipped = load_bundle(summary["bundle"]).model.state_dict()[HEAD.removeprefix("model.")]
    assert torch.allclose(shipped, recorder.validated[summary["best_epoch"]], atol=1e-6)


def test_without_averaging_the_checkpoint_is_the_raw_model(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "train.epochs=1", "train.weight_averaging=none")
    prepare_tiny(tmp_path, cfg)
    summary = train(cfg)
    checkpoint = torch.load(
        Path(summary["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert "current_model_state" not in checkpoint
