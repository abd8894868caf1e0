"""DSNet's Multi-Scale Attention Fusion (DSNet Sec 3.4, Fig. 4, Eq. 1-5)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .conv import ConvBNAct


class Gonv(nn.Sequential):
    """The "GONV" of DSNet Eq. 2-3: channel compression and expansion, ``1x1 conv (bias)-BN-ReLU``
    to ``channels // reduction`` then ``1x1 conv (bias)-BN`` back (as in the official code)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"reduction: {reduction} leaves no channels of {channels}")
        self.squeeze = ConvBNAct(channels, hidden, 1, bias=True)
        self.expand = ConvBNAct(hidden, channels, 1, bias=True, act=None)


class MSAF(nn.Module):
    """MSAF (DSNet Sec 3.4, Fig. 4): fuses the spatial and context branches.

    * ``F_fuse = F_spatial + F_context`` (Eq. 1);
    * pixel attention: ``Gonv(F_fuse)`` at full resolution (Eq. 3);
    * region attention: for each grid ``g`` in ``regions`` (1, 4, 8, 16), adaptive average pool
      to ``g x g``, Gonv, and back to H x W by nearest upsampling (each cell's weight repeated
      over its region; the 1x1 grid broadcasts) (Eq. 2);
    * ``a = sigmoid(pixel + sum of regions)`` (Eq. 4).

    Output: ``scale * F_spatial * a + scale * F_context * (1 - a)`` with ``scale = 2`` — the
    official code; the paper's Eq. 5 reads ``F_context * a + F_spatial * (1 - a)`` (the weight on
    the other branch, and no factor 2). The released weights are trained with the code's form.
    """

    def __init__(self, channels: int, reduction: int = 4, regions: Sequence[int] = (1, 4, 8, 16),
                 scale: float = 2.0):
        super().__init__()
        self.regions = tuple(int(g) for g in regions)
        self.scale = scale
        self.pixel = Gonv(channels, reduction)
        self.region_gonvs = nn.ModuleList(Gonv(channels, reduction) for _ in self.regions)

    def attention(self, fused: torch.Tensor) -> torch.Tensor:
        """The weights ``a`` of Eq. 4 for ``F_fuse``."""
        logits = self.pixel(fused)
        size = fused.shape[-2:]
        for grid, gonv in zip(self.regions, self.region_gonvs):
            region = gonv(nn.functional.adaptive_avg_pool2d(fused, grid))
            if grid != 1:
                region = nn.functional.interpolate(region, size=size, mode="nearest")
            logits = logits + region
        return torch.sigmoid(logits)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        a = self.attention(spatial + context)
        return self.scale * spatial * a + self.scale * context * (1 - a)
