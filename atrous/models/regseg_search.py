"""Searchable RegSeg: trainable fractional dilation rates (RegSeg Sec 3.4, Fig. 7, Table 2).

``regseg_search`` is RegSeg in which every branch of every stride-1 D block at 1/16 is a
:class:`~atrous.nn.FractionalDilatedConv`: block ``i`` has trainable rates ``r1, r2`` initialized
from ``RegSegSearchConfig.dilations``. Everything else (stem, 1/4 and 1/8 stages, the stride-2
block, decoder) is RegSeg's code unchanged; the state dict is RegSeg's plus one ``...rate`` per
searched branch. :func:`atrous.search.round_dilations` turns the trained rates into the integer
config the paper retrains (Sec 3.4).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from torch import nn

from ..errors import UserError
from ..nn import DilatedConv, FractionalDilatedConv
from .base import FovStep, ModelCard
from .regseg import EXP48_DILATIONS, RegSeg, RegSegConfig
from .registry import register_model

# The paper's Cityscapes model (exp48) as the starting point, with the first block's single branch
# written as two (1, 1): a DilatedConv with two equal rates computes what one branch does (the same
# group width over the same channels), and the search needs two rates per block as in Table 2.
SEARCH_START = ((1.0, 1.0),) + tuple(tuple(float(r) for r in d) for d in EXP48_DILATIONS[1:])


@dataclass(frozen=True)
class RegSegSearchConfig(RegSegConfig):
    """A RegSeg variant whose 1/16 dilations are trainable floats (RegSeg Sec 3.4, Fig. 7);
    ``dilations`` are their initial values (one entry per stride-1 block at 1/16, one rate per branch)."""

    dilations: Sequence[Sequence[float]] = SEARCH_START


class RegSegSearch(RegSeg):
    """RegSeg with :class:`~atrous.nn.FractionalDilatedConv` branches in the stride-1 D blocks at
    1/16 (RegSeg Sec 3.4). At integer initial rates it computes exactly what RegSeg with those
    dilations computes (same modules, same initialization order)."""

    def __init__(self, cfg: RegSegSearchConfig, num_classes: int = 19):
        rates = [tuple(float(r) for r in d) for d in cfg.dilations]
        bad = [r for d in rates for r in d if not r >= 0]
        if bad:
            raise UserError(f"dilations: initial rates must be >= 0, got {bad}")
        # Build RegSeg at the rounded rates, then swap each branch for a fractional conv that shares
        # its weight: parameter creation order (and so seeded initialization) is RegSeg's.
        integer = [tuple(max(1, round(r)) for r in d) for d in rates]
        super().__init__(replace(cfg, dilations=integer), num_classes)
        self.config = cfg
        for (name, conv), block_rates in zip(self.searched_convs(), rates, strict=True):
            conv.branches = nn.ModuleList(FractionalDilatedConv.from_conv(branch, r)
                                          for branch, r in zip(conv.branches, block_rates))

    def searched_convs(self) -> list[tuple[str, DilatedConv]]:
        """``(block name, its DilatedConv)`` for every stride-1 D block at 1/16, input to output."""
        return [(f"stage16.{i}", block.conv2.conv) for i, block in enumerate(self.backbone.stage16)
                if block.stride == 1]

    def rates(self) -> list[tuple[float, ...]]:
        """The current dilation rate of every branch, one tuple per searched block."""
        return [tuple(float(b.rate.detach()) for b in conv.branches) for _, conv in self.searched_convs()]

    def rate_parameters(self) -> list[nn.Parameter]:
        """The trainable rates (for their own optimizer group: own lr, no weight decay)."""
        return [b.rate for _, conv in self.searched_convs() for b in conv.branches]

    def fov_path(self) -> list[FovStep]:
        current = dict(zip((name for name, _ in self.searched_convs()), self.rates()))
        return [step._replace(dilations=current.get(step.name, step.dilations))
                for step in super().fov_path()]


REGSEG_SEARCH_CARD = ModelCard(
    paper="RegSeg (Gao, 2021)", reference="Sec 3.4, Fig. 7, Table 2 (dilation-rate search)",
    dataset="cityscapes", fps=18.0, gpu="T4",
    notes="trainable fractional dilations; the paper's deformable-conv version ran at 18 vs 30 FPS; "
          "atrous computes it as four integer-dilation convs (docs/search.md)")

register_model("regseg_search", RegSegSearch, RegSegSearchConfig(), REGSEG_SEARCH_CARD)
