"""DSNet's Serial-Parallel Atrous Spatial Pyramid Pooling (DSNet Sec 3.5, Fig. 5, Table 3)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from .conv import ConvBNAct, resize_to
from .mfacb import atrous_stack, serial_outputs


class GlobalPoolBranch(nn.Module):
    """ASPP's image-level branch (the "global pooling" of SPASPP, DSNet Sec 3.5, Fig. 5): global
    average pool, 1x1 conv-BN-ReLU, bilinear upsample (``align_corners=False``) back to the input
    size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(x, 1)
        return resize_to(self.conv(pooled), x.shape[-2:])


class SPASPP(nn.Module):
    """SPASPP (DSNet Sec 3.5, Fig. 5): 3x3 atrous conv-BN-ReLU layers *stacked* with rates
    6, 12, 18, 24 (Table 3's "[6, 12, 18, 24, all]"); every intermediate map and the global-pool
    branch are concatenated, compressed by a 1x1 conv-BN-ReLU, and added to the input projected
    by a 1x1 conv-BN-ReLU. As in the official code, a final 3x3 conv (with bias)-BN-ReLU follows
    the sum (Fig. 5 does not show it).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 rates: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        if not self.rates:
            raise UserError("rates: SPASPP needs at least one atrous rate")
        self.convs = atrous_stack(in_channels, mid_channels, self.rates)
        self.pool = GlobalPoolBranch(in_channels, mid_channels)
        self.compress = ConvBNAct(mid_channels * (len(self.rates) + 1), out_channels, 1)
        self.shortcut = ConvBNAct(in_channels, out_channels, 1)
        self.out = ConvBNAct(out_channels, out_channels, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = serial_outputs(self.convs, x) + [self.pool(x)]
        return self.out(self.compress(torch.cat(outs, dim=1)) + self.shortcut(x))
