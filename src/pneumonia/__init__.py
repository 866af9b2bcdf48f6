"""pneumonia: train, evaluate, explain and serve pediatric chest X-ray pneumonia classifiers.

The documented Python API (`pneumonia.api`), loaded on first use so that `import pneumonia`
stays light:

    from pneumonia import load_bundle, predict, evaluate, train, load_config
"""

from importlib import import_module
from typing import Any

from pneumonia.core import LABELS, __version__

_API = ("evaluate", "load_bundle", "load_config", "predict", "train")
__all__ = ["LABELS", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("pneumonia.api"), name)
    raise AttributeError(f"module 'pneumonia' has no attribute {name!r}")
