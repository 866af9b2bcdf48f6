"""Shared fixtures: synthetic datasets made in the test, and the real data when it is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PNEUMONIA_SHARED", REPO.parent / "shared"))
SHARED_TRAIN = SHARED / "data" / "chest_xray"


@pytest.fixture
def shared_chest_xray() -> Path:
    """The shared Kaggle training split; the test is skipped when it is absent."""
    if not (SHARED_TRAIN / "train").is_dir():
        pytest.skip(f"{SHARED_TRAIN} is absent")
    return SHARED_TRAIN
