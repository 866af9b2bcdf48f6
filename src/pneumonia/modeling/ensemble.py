"""Ensemble networks: K member networks behind one input contract, one logit out.

The ensemble's input contract is its largest member's. Each member sees the ensemble's square
resized (bilinear) to its own size and renormalised to its own mean and std, and its logit is
divided by its own calibration temperature; the ensemble's logit is the mean of these
calibrated logits (`combine: mean_calibrated_logit`). The ensemble then gets its own
calibration and threshold, fitted on validation like any bundle (`pneumonia.training.ensembling`
builds the bundle), so predict, evaluate, threshold, compare, report, serve, explain and ONNX
export take it like any other bundle.

All members' weights live in one safetensors file (keys `members.<k>.`): the bundle's hash
covers every member. Each member's architecture, contract and temperature are in
`model.json`'s architecture record, which the weights file carries too, so editing any of
them is caught at load time.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from pneumonia.core.errors import PneumoniaError
from pneumonia.core.meta import Member
from pneumonia.core.preprocess import Preprocessing
from pneumonia.modeling.models import create_model, get_spec

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
        subtype: bool = False,
    ) -> None:
        super().__init__()
        self.subtype = subtype  # every member has the subtype head: pass its mean on
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
        contracts = [m.preprocessing for m in members]
        temperatures = [m.temperature for m in members]
        subtype = all(m.num_classes == 2 for m in members)
        return cls(nets, contracts, temperatures, contract, subtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) in the ensemble's contract -> (N, 1) logits: the mean calibrated
        screening logit; (N, 2) with `subtype`, the members' mean subtype logit beside it."""
        out, sub = [], []
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
            found = member(xk).flatten(1)
            out.append(found[:, :1] / self.temperatures[k])
            sub.append(found[:, 1:2])
        screen = torch.stack(out).mean(0)
        return torch.cat([screen, torch.stack(sub).mean(0)], 1) if self.subtype else screen

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
