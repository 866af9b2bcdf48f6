"""The core every stage shares: the label order, the version, the configuration, the
preprocessing contract, the bundle format and its card, errors, outputs, progress, tracking.
Nothing here imports a stage."""

from importlib.metadata import PackageNotFoundError, version

LABELS: tuple[str, str] = ("NORMAL", "PNEUMONIA")
"""Label order used everywhere: index 0 is NORMAL, index 1 is PNEUMONIA (the positive class)."""

SUBTYPES: tuple[str, str] = ("bacterial", "viral")
"""Pneumonia subtypes, in the order of the subtype output: its logit is that of P(viral |
pneumonia), so index 1 (viral) is the positive class."""

try:
    __version__ = version("pneumonia")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["LABELS", "__version__"]
