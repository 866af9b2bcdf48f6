"""pneumonia: train, evaluate, explain and serve pediatric chest X-ray pneumonia classifiers.

The documented Python API (`pneumonia.api`) and its types, loaded on first use so that
`import pneumonia` stays light:

    from pneumonia import load_bundle, predict, evaluate, train, load_config
    from pneumonia import Bundle, Prediction, Config, EvaluationResult, TrainingResult
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from pneumonia.core import LABELS, __version__

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` loads them when used
    from pneumonia.api import (
        Bundle,
        Config,
        EvaluationResult,
        Prediction,
        TrainingResult,
        evaluate,
        load_bundle,
        load_config,
        predict,
        train,
    )

_API = ("evaluate", "load_bundle", "load_config", "predict", "train")
_TYPES = ("Bundle", "Config", "EvaluationResult", "Prediction", "TrainingResult")
__all__ = [
    "LABELS",
    "Bundle",
    "Config",
    "EvaluationResult",
    "Prediction",
    "TrainingResult",
    "__version__",
    "evaluate",
    "load_bundle",
    "load_config",
    "predict",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _API or name in _TYPES:
        return getattr(import_module("pneumonia.api"), name)
    raise AttributeError(f"module 'pneumonia' has no attribute {name!r}")
