"""DSNet's Multi-scale Fusion Atrous Convolutional Block (DSNet Sec 3.3, Fig. 3, Table 2)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from .conv import ConvBNAct


def atrous_stack(in_channels: int, mid_channels: int, rates: Sequence[int]) -> nn.ModuleList:
    """Serial 3x3 atrous conv-BN-ReLU layers, one per rate: the first maps ``in_channels`` to
    ``mid_channels``, the rest keep ``mid_channels`` (MFACB Fig. 3 and SPASPP Fig. 5 share it)."""
    widths = [in_channels] + [mid_channels] * len(rates)
    return nn.ModuleList(ConvBNAct(widths[i], mid_channels, 3, dilation=r) for i, r in enumerate(rates))


def serial_outputs(convs: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """Run ``convs`` one after another and return every intermediate output."""
    outs = []
    for conv in convs:
        x = conv(x)
        outs.append(x)
    return outs


class MFACB(nn.Module):
    """MFACB (DSNet Sec 3.3, Fig. 3): three *serial* 3x3 atrous conv-BN-ReLU layers, one rate
    each; their three outputs are concatenated and compressed by a 1x1 conv-BN-ReLU, and added to
    the input projected by a 1x1 conv-BN-ReLU (the official ``process1``; it is present even when
    the width does not change, and both branches end in ReLU as in the code). No activation
    after the sum.

    The first atrous conv maps ``in_channels`` to ``mid_channels``, the others keep
    ``mid_channels`` (the official ``inter_planes``); the block outputs ``out_channels``.
    With rates [2, 2, 2] the three maps see 5x5, 9x9 and 13x13 (Table 2).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 dilations: Sequence[int] = (2, 2, 2)):
        super().__init__()
        self.dilations = tuple(int(d) for d in dilations)
        if len(self.dilations) < 2:
            raise UserError(f"dilations: MFACB needs at least two atrous layers, got {self.dilations}")
        self.convs = atrous_stack(in_channels, mid_channels, self.dilations)
        self.compress = ConvBNAct(mid_channels * len(self.dilations), out_channels, 1)
        self.shortcut = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compress(torch.cat(serial_outputs(self.convs, x), dim=1)) + self.shortcut(x)
