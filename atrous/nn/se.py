"""Squeeze-and-excitation (Hu et al.), as used in RegSeg's D block (Sec 3.2)."""
from __future__ import annotations

import torch
from torch import nn


class SE(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 conv (bias) + ReLU, 1x1 conv (bias) +
    sigmoid, and a channel-wise product with the input.

    RegSeg (Sec 3.2) uses "an SE reduction ratio of 1/4"; its code takes the hidden width from the
    *block input* channels (``in_channels // 4``), not from the channels SE sees, so ``hidden`` is
    passed explicitly.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.act2 = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        s = self.act2(self.conv2(self.act1(self.conv1(s))))
        return x * s
