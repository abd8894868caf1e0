"""DSNet's Multi-scale Fusion Atrous Convolutional Block (DSNet Sec 3.3, Fig. 3, Table 2)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .conv import ConvBNAct


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
            raise ValueError(f"dilations: MFACB needs at least two atrous layers, got {self.dilations}")
        widths = [in_channels] + [mid_channels] * len(self.dilations)
        self.convs = nn.ModuleList(ConvBNAct(widths[i], mid_channels, 3, dilation=d)
                                   for i, d in enumerate(self.dilations))
        self.compress = ConvBNAct(mid_channels * len(self.dilations), out_channels, 1)
        self.shortcut = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        outs = []
        y = x
        for conv in self.convs:
            y = conv(y)
            outs.append(y)
        return self.compress(torch.cat(outs, dim=1)) + shortcut
