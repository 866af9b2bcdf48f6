"""Random states saved with a checkpoint and put back: the same draws after a resume."""

import random

import numpy as np
import torch

from pneumonia.training.rng_state import capture, restore


def draws(loader: torch.Generator) -> tuple[float, float, float, float]:
    return (
        float(torch.rand(())),
        float(np.random.random()),
        random.random(),
        float(torch.rand((), generator=loader)),
    )


def test_capture_then_restore_repeats_every_generator() -> None:
    loader = torch.Generator().manual_seed(7)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    saved = capture(loader)
    first = draws(loader)
    draws(loader)  # the generators move on
    restore(saved, loader)
    assert draws(loader) == first
    assert isinstance(saved["numpy"]["keys"], torch.Tensor)  # checkpoint-safe types only
