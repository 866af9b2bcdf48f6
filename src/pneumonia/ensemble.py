"""Ensemble bundles: K member bundles behind one input contract, one logit out.

The ensemble's input contract is its largest member's. Each member sees the ensemble's square
resized (bilinear) to its own size and renormalised to its own mean and std, and its logit is
divided by its own calibration temperature; the ensemble's logit is the mean of these
calibrated logits (`combine: mean_calibrated_logit`). The ensemble then gets its own
calibration and threshold, fitted on validation like any bundle, so predict, evaluate,
threshold, compare, report, serve, explain and ONNX export take it like any other bundle.

All members' weights live in one safetensors file (keys `members.<k>.`): the bundle's hash
covers every member. Each member's architecture, contract and temperature are in
`model.json`'s architecture record, which the weights file carries too, so editing any of
them is caught at load time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pneumonia.bundle import (
    WEIGHTS,
    Architecture,
    Bundle,
    BundleMeta,
    Member,
    Threshold,
    load_bundle,
    save_bundle,
)
from pneumonia.config import OperatingConfig
from pneumonia.errors import PneumoniaError
from pneumonia.evaluate import score_split
from pneumonia.metrics import binary_metrics, headline, jsonable
from pneumonia.models import create_model, get_spec
from pneumonia.operating import fit_operating_point
from pneumonia.preprocess import Preprocessing

log = logging.getLogger(__name__)
COMBINE = "mean_calibrated_logit"


class EnsembleModel(nn.Module):
    """Mean of the members' temperature-scaled logits, from one contract's input square."""

    def __init__(
        self,
        members: list[nn.Module],
        contracts: list[Preprocessing],
        temperatures: list[float],
        contract: Preprocessing,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.sizes = [c.image_size for c in contracts]
        self.input_size = contract.image_size
        # member input = ensemble input * scale + shift (undo one normalisation, apply another)
        self.scales = [contract.std / c.std for c in contracts]
        self.shifts = [(contract.mean - c.mean) / c.std for c in contracts]
        self.temperatures = list(temperatures)

    @classmethod
    def from_members(cls, members: list[Member], contract: Preprocessing) -> EnsembleModel:
        """The untrained network a bundle's member records describe."""
        nets = [
            create_model(m.name, in_chans=m.in_chans, num_classes=m.num_classes) for m in members
        ]
        return cls(
            nets, [m.preprocessing for m in members], [m.temperature for m in members], contract
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) in the ensemble's contract -> (N, 1) logits."""
        out = []
        for k, member in enumerate(self.members):
            size = self.sizes[k]
            xk = (
                x
                if size == self.input_size
                else nn.functional.interpolate(
                    x, size=(size, size), mode="bilinear", align_corners=False
                )
            )
            xk = xk * self.scales[k] + self.shifts[k]
            out.append(member(xk).reshape(-1, 1) / self.temperatures[k])
        return torch.stack(out).mean(0)

    def cam_layers(self, names: list[str]) -> list[nn.Module]:
        """Each member's Grad-CAM target layer (`names`: the members' registry names)."""
        layers = []
        for member, name in zip(self.members, names, strict=True):
            spec = get_spec(name)
            if spec.tokens:
                raise PneumoniaError(
                    f"class activation maps of an ensemble need convolutional members; {name} "
                    "is a ViT (explain it on its own bundle)"
                )
            layers.append(member.get_submodule(spec.cam_layer))
        return layers


def _member_bundle(source: Path) -> Bundle:
    """A member from a bundle folder or a training run folder (its `bundle/`)."""
    folder = source / "bundle" if (source / "bundle" / "model.json").is_file() else source
    return load_bundle(folder)


def _check_members(bundles: list[Bundle]) -> None:
    if len(bundles) < 2:
        raise PneumoniaError("an ensemble needs at least two members")
    for b in bundles:
        if b.meta.architecture.members is not None:
            raise PneumoniaError(f"{b.path}: is an ensemble already; list its members instead")
        if b.meta.architecture.in_chans != 1:
            raise PneumoniaError(f"{b.path}: takes {b.meta.architecture.in_chans} channels, not 1")
    modes = {b.contract.resize for b in bundles}
    if len(modes) > 1:
        raise PneumoniaError(
            f"members resize differently ({', '.join(sorted(modes))}); an ensemble has one "
            "input contract, so its members must share preprocess.resize"
        )


def _default_data(bundles: list[Bundle]) -> str:
    digests = {b.meta.data.get("manifest_sha256") for b in bundles}
    manifests = [b.meta.data.get("manifest") for b in bundles]
    if len(digests) != 1 or None in digests or not manifests[0]:
        raise PneumoniaError(
            "the members were not trained on the same recorded manifest; pass --data "
            "MANIFEST_OR_FOLDER for the validation data to fit the ensemble's threshold on"
        )
    return str(manifests[0])


def build_ensemble(
    sources: list[Path],
    out: Path,
    data: str | Path | None = None,
    split: str = "val",
    cfg: OperatingConfig | None = None,
    workers: int | None = None,
    show: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Combine member bundles (or run folders) into an ensemble bundle at `out`, with its own
    calibration and threshold fitted on `split` of `data` (default: the members' manifest)."""
    if out.exists():
        raise PneumoniaError(f"{out}: already exists; choose a new folder for the ensemble")
    if split == "test":
        raise PneumoniaError("the operating point is chosen on validation data, never on test")
    bundles = [_member_bundle(Path(s)) for s in sources]
    _check_members(bundles)
    data = data if data is not None else _default_data(bundles)
    contract = max(bundles, key=lambda b: b.contract.image_size).contract
    members = [
        Member(
            name=b.meta.architecture.name,
            preprocessing=b.contract,
            temperature=b.temperature,
            source=str(b.path),
            source_sha256=b.meta.files[WEIGHTS].sha256,
        )
        for b in bundles
    ]
    model = EnsembleModel(
        [b.model for b in bundles],
        [b.contract for b in bundles],
        [b.temperature for b in bundles],
        contract,
    ).eval()
    arch = Architecture(name="ensemble", members=members, combine=COMBINE)
    placeholder = Threshold(value=0.5, rule="unfitted")
    meta = BundleMeta(architecture=arch, preprocessing=contract, threshold=placeholder)
    scored = score_split(Bundle(out, meta, model), data, split, workers, show)
    cfg = cfg or OperatingConfig()
    threshold, calibration, probs = fit_operating_point(scored.labels, scored.logits, cfg)
    threshold.detail["data"] = scored.source
    metrics = binary_metrics(scored.labels, probs, threshold.value)
    validation = {"split": split, "data": scored.source, **jsonable(headline(metrics))}
    validation.update({k: metrics[k] for k in ("n", "positives", "threshold", "confusion_matrix")})
    meta = meta.model_copy(
        update={
            "threshold": threshold,
            "calibration": calibration,
            "validation": validation,
            "data": dict(bundles[0].meta.data),
            "training": {"command": command, "ensemble_of": [str(b.path) for b in bundles]},
        }
    )
    save_bundle(model, meta, out)
    log.info("ensemble of %d members: %s", len(bundles), out)
    return {
        "bundle": str(out),
        "members": [m.source for m in members],
        "validation": validation,
        "threshold": threshold.value,
    }
