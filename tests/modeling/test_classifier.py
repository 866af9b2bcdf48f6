"""The LightningModule: two-stage fine-tuning freezes what it says, and only that."""

from pathlib import Path

import pytest
import torch
from lightning import Trainer

from conftest import prepare_tiny, tiny_config
from pneumonia.modeling.classifier import XrayClassifier, freeze_stages, safe_auc, split_parameters
from pneumonia.modeling.datamodule import XrayDataModule
from pneumonia.modeling.models import create_model


def _snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _changed(before: list[torch.Tensor], params: list[torch.nn.Parameter]) -> list[bool]:
    return [not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True)]


def _fit(tmp_path: Path, module: XrayClassifier, epochs: int) -> None:
    cfg = tiny_config(tmp_path)
    dm = XrayDataModule(cfg.data, cfg.preprocess)
    trainer = Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=dm)


def test_stage_one_trains_only_the_head(tmp_path: Path) -> None:
    prepare_tiny(tmp_path, tiny_config(tmp_path))
    cfg = tiny_config(tmp_path, "train.freeze_epochs=1").train
    model = create_model("cnn_deep")
    backbone, head = split_parameters(model)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()  # type: ignore[union-attr]
    before_bb, before_head = _snapshot(backbone), _snapshot(head)
    module = XrayClassifier(model, cfg, pos_weight=None)
    _fit(tmp_path, module, epochs=1)
    assert not any(_changed(before_bb, backbone))
    assert all(_changed(before_head, head))
    assert torch.equal(stats, bn.running_mean)  # type: ignore[arg-type]

    model = create_model("cnn_deep")
    backbone, _ = split_parameters(model)
    before_bb = _snapshot(backbone)
    _fit(tmp_path, XrayClassifier(model, cfg, pos_weight=None), epochs=2)  # stage 2 in epoch 1
    assert all(_changed(before_bb, backbone))


def test_frozen_stages_stay_frozen(tmp_path: Path) -> None:
    prepare_tiny(tmp_path, tiny_config(tmp_path))
    cfg = tiny_config(tmp_path, "train.frozen_stages=2").train
    model = create_model("cnn_small")
    module = XrayClassifier(model, cfg, pos_weight=2.0)
    params = list(model.parameters())
    before = _snapshot(params)
    _fit(tmp_path, module, epochs=1)
    assert _changed(before, params) == [False] * 4 + [True] * (len(params) - 4)
    with pytest.raises(ValueError, match="has 5 stages"):
        freeze_stages(create_model("cnn_small"), 5)


def test_auc_is_nan_for_one_class() -> None:
    import numpy as np

    assert np.isnan(safe_auc(np.ones(3), np.array([0.1, 0.5, 0.9])))
    assert safe_auc(np.array([0, 1]), np.array([0.2, 0.8])) == 1.0


def test_label_smoothing_pulls_training_targets_in(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_config(Path("unused"), "train.label_smoothing=0.2", "train.channels_last=false")
    torch.manual_seed(0)
    module = XrayClassifier(create_model("cnn_small"), cfg.train, pos_weight=None)
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 1, 0])
    loss = module.training_step((x, y, torch.full((4,), -1)), 0)
    logits = module(x).detach()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert loss.item() == pytest.approx(bce(logits, torch.tensor([0.1, 0.9, 0.9, 0.1])).item())
    assert loss.item() != pytest.approx(bce(logits, y.float()).item())


def test_progressive_sizes_shrink_early_training_batches_only(tmp_path: Path) -> None:
    prepare_tiny(tmp_path, tiny_config(tmp_path))
    cfg = tiny_config(tmp_path, "train.progressive_sizes=[16]").train
    model = create_model("cnn_small")
    module = XrayClassifier(model, cfg, pos_weight=None)
    seen: list[tuple[int, bool, int]] = []  # (epoch, training, side)
    model.register_forward_pre_hook(
        lambda m, args: seen.append((module.current_epoch, m.training, args[0].shape[-1]))
    )
    _fit(tmp_path, module, epochs=2)
    sides = {(epoch, training): side for epoch, training, side in seen}
    assert sides == {(0, True): 16, (0, False): 32, (1, True): 32, (1, False): 32}


def test_progressive_sizes_cannot_exceed_the_image_size(tmp_path: Path) -> None:
    from pneumonia.core.errors import ConfigError

    message = r"configuration: train\.progressive_sizes \[16, 64\]: each side must be at most"
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path, "train.progressive_sizes=[16, 64]")


def test_the_consistency_term_pulls_only_the_other_rendering() -> None:
    cfg = tiny_config(Path("unused"), "train.channels_last=false")
    torch.manual_seed(0)
    module = XrayClassifier(create_model("cnn_small"), cfg.train, pos_weight=None).eval()
    torch.nn.init.normal_(module.model.get_classifier().weight, std=1.0)  # logits away from 0
    copy = torch.randn(3, 1, 32, 32, requires_grad=True)
    other = (copy.detach() + 0.5 * torch.randn(3, 1, 32, 32)).requires_grad_(True)
    term = module.consistency_term((copy, other, torch.zeros(3)))
    expected = (module(other) - module(copy)).pow(2).mean()
    assert term.item() == pytest.approx(expected.item(), rel=1e-4) and term.item() > 1e-3
    term.backward()
    assert copy.grad is not None and not copy.grad.any()  # the copy's answer is held fixed
    assert other.grad is not None and other.grad.abs().sum() > 0
    same = module.consistency_term((copy, copy.detach().clone(), torch.zeros(3)))
    assert same.item() == pytest.approx(0, abs=1e-9)


def test_training_steps_with_pairs_bring_their_answers_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    x, y, s = torch.rand(8, 1, 32, 32), torch.tensor([0, 1] * 4), torch.full((8,), -1)
    copy = torch.rand(6, 1, 32, 32)
    pairs = (copy, copy.pow(0.3), torch.tensor([0, 1] * 3))  # a brighter rendering of each
    start = create_model("cnn_small").state_dict()
    gaps = []
    for weight in (0.0, 1.0):
        cfg = tiny_config(Path("unused"), "train.channels_last=false")
        module = XrayClassifier(create_model("cnn_small"), cfg.train, pos_weight=None)
        module.model.load_state_dict(start)
        module.cfg = cfg.train.model_copy(update={"consistency": weight})
        monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
        opt = torch.optim.Adam(module.parameters(), lr=3e-3)
        for _ in range(30):
            opt.zero_grad()
            module.training_step({"images": (x, y, s), "pairs": pairs}, 0).backward()
            opt.step()
        with torch.inference_mode():
            module.eval()
            gaps.append(float((module(pairs[1]) - module(pairs[0])).abs().mean()))
    assert gaps[1] < 0.5 * gaps[0]


def test_freeze_batchnorm_keeps_the_loaded_statistics_while_everything_trains(
    tmp_path: Path,
) -> None:
    prepare_tiny(tmp_path, tiny_config(tmp_path))
    for frozen in (True, False):
        cfg = tiny_config(tmp_path, f"train.freeze_batchnorm={frozen}").train
        model = create_model("cnn_deep")
        backbone, _ = split_parameters(model)
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        stats, before = bn.running_mean.clone(), _snapshot(backbone)  # type: ignore[union-attr]
        _fit(tmp_path, XrayClassifier(model, cfg, pos_weight=None), epochs=1)
        assert all(_changed(before, backbone))
        assert torch.equal(stats, bn.running_mean) == frozen  # type: ignore[arg-type]
