"""Training augmentation: geometry, exposure and provenance (another rendering of a film)."""

import numpy as np
import pytest
import torch
from PIL import Image

from pneumonia.core.config import Config, load_config
from pneumonia.data.synthetic import synthetic_xray
from pneumonia.modeling.augment import (
    RENDER_OPS,
    AspectStretch,
    RandomGamma,
    Rerender,
    build_augment,
)


def test_augment_has_no_mirror_unless_asked() -> None:
    default = build_augment(Config().data.augment)
    assert not any("Flip" in type(t).__name__ for t in default.transforms)
    flips = build_augment(load_config(None, ["data.augment.hflip=true"]).data.augment)
    assert any("Flip" in type(t).__name__ for t in flips.transforms)
    x = torch.rand(1, 16, 16)
    assert build_augment(Config().data.augment)(x).shape == (1, 16, 16)


def test_aspect_stretch_letterboxes_wide_and_tall() -> None:
    x = torch.ones(1, 40, 40)
    wide = AspectStretch(2.0, 2.0)(x)  # twice as wide as tall: black bands top and bottom
    assert wide.shape == x.shape and wide[0, :9].max() == 0 and wide[0, -9:].max() == 0
    assert wide[0, 20].min() == pytest.approx(1.0) and wide[0, :, 0].sum() == pytest.approx(20)
    tall = AspectStretch(0.5, 0.5)(x)
    assert tall[0, :, :9].max() == 0 and tall[0, :, -9:].max() == 0
    torch.manual_seed(0)
    ratios = {int((AspectStretch(0.75, 1.6)(x)[0, :, 20] > 0).sum()) for _ in range(20)}
    assert len(ratios) > 3  # random within the range


def test_aspect_stretch_fill_keeps_the_frame_full() -> None:
    x = torch.zeros(1, 40, 40)
    x[0, :, 16:24] = 1.0  # a vertical bar 8 px wide in the middle
    wide = AspectStretch(1.5, 1.5, "fill")(x)  # content 1.5x wider, sides cut off
    assert wide.shape == x.shape
    assert int((wide[0, 20] > 0.5).sum()) == 12  # the bar is 1.5x as wide
    assert wide[0, :, 20].min() == pytest.approx(1.0)  # and still spans the full height
    y = torch.ones(1, 40, 40)
    for aspect in (0.6, 1.6):  # no black bands either way
        assert AspectStretch(aspect, aspect, "fill")(y).min() == pytest.approx(1.0)


def test_aspect_mode_follows_the_contract() -> None:
    cfg = Config().data.augment.model_copy(update={"aspect_p": 1.0})
    x = torch.ones(1, 32, 32)
    torch.manual_seed(0)
    letterboxed = [build_augment(cfg, "pad").transforms[0](x).min() for _ in range(10)]
    filled = [build_augment(cfg, "stretch").transforms[0](x).min() for _ in range(10)]
    assert min(letterboxed) == 0 and min(filled) == pytest.approx(1.0)
    forced = cfg.model_copy(update={"aspect_mode": "letterbox"})
    assert min(build_augment(forced, "stretch").transforms[0](x).min() for _ in range(10)) == 0


def test_random_gamma_stays_in_range_and_varies() -> None:
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 101).reshape(1, 1, 101)
    outs = [RandomGamma(0.6)(x) for _ in range(20)]
    assert all(o.min() >= 0 and o.max() <= 1 for o in outs)
    mids = [float(o[0, 0, 50]) for o in outs]
    assert min(mids) < 0.45 and max(mids) > 0.55  # darker and brighter mid-tones
    assert min(mids) >= 0.5**1.6 - 1e-6 and max(mids) <= 0.5 ** (1 / 1.6) + 1e-6


def test_robust_augment_steps_appear_only_when_configured() -> None:
    off = ["data.augment.aspect_min=1", "data.augment.aspect_max=1", "data.augment.gamma=0"]
    names = [
        type(t).__name__ for t in build_augment(load_config(None, off).data.augment).transforms
    ]
    assert "AspectStretch" not in names and "RandomGamma" not in names
    keys = ["data.augment.aspect_min=0.75", "data.augment.aspect_max=1.6"]
    robust = load_config(None, [*keys, "data.augment.gamma=0.5", "data.augment.aspect_p=0.5"])
    names = [type(t).__name__ for t in build_augment(robust.data.augment).transforms]
    assert names[0] == "RandomApply" and "RandomGamma" in names
    assert build_augment(robust.data.augment)(torch.rand(1, 24, 24)).shape == (1, 24, 24)


@pytest.fixture
def xray() -> torch.Tensor:
    gray = synthetic_xray("PNEUMONIA", 64, 64, np.random.default_rng(0))
    return torch.from_numpy(gray).float().div(255)[None]


def test_rerender_keeps_the_picture_and_changes_its_texture(xray: torch.Tensor) -> None:
    torch.manual_seed(0)
    outs = [Rerender()(xray) for _ in range(30)]
    assert all(o.shape == xray.shape and o.dtype == torch.float32 for o in outs)
    assert all(o.min() >= 0 and o.max() <= 1 for o in outs)
    errors = [float((o - xray).abs().mean()) for o in outs]
    assert max(errors) < 0.08  # the same film: no more than a few grey levels on average
    assert min(errors) > 0 and len({round(e, 6) for e in errors}) > 20  # and every time another


@pytest.mark.parametrize("op", RENDER_OPS)
def test_each_rendering_does_what_it_says(xray: torch.Tensor, op: str) -> None:
    pixels = xray[0].mul(255).round().to(torch.uint8).numpy()
    big = Image.fromarray(pixels).resize((128, 128), Image.Resampling.BICUBIC)
    torch.manual_seed(1)
    out = np.asarray(Rerender()._render(big, op), dtype=np.float64)
    before = np.asarray(big, dtype=np.float64)
    assert out.shape == before.shape and np.abs(out - before).mean() > 0

    def detail(a: np.ndarray) -> float:  # energy of the finest differences
        return float(np.abs(np.diff(a, axis=1)).mean())

    if op == "bits":
        assert len(np.unique(out)) <= 128
    if op == "blur":
        assert detail(out) < detail(before)
    if op == "sharpen":
        assert detail(out) > detail(before)


def test_rerender_refuses_settings_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="scale_max"):
        Rerender(scale_max=0.5)
    with pytest.raises(ValueError, match="jpeg_min"):
        Rerender(jpeg_min=100)


def test_render_p_adds_the_step_only_when_asked() -> None:
    names = [type(t).__name__ for t in build_augment(Config().data.augment).transforms]
    assert "Rerender" not in names and "RandomApply" not in names[-1:]
    half = load_config(None, ["data.augment.render_p=0.5"]).data.augment
    last = build_augment(half).transforms[-1]
    assert type(last).__name__ == "RandomApply" and type(last.transforms[0]).__name__ == "Rerender"
    always = load_config(None, ["data.augment.render_p=1"]).data.augment
    assert type(build_augment(always).transforms[-1]).__name__ == "Rerender"
