"""Multi-resolution Dilated Asymmetric module (FASSD-Net Sec III-C, Fig. 4)."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .conv import ConvBNAct
from .dapf import AsymmetricDilatedConv

MDA_BN_EPS = 1e-3  # the official MDA (after DABNet's BNPReLU) uses eps 1e-3 and per-channel PReLU


class BNPReLU(nn.Sequential):
    """BatchNorm (eps 1e-3) + per-channel PReLU, the pre-/post-activation of the MDA module
    (DABNet's ``BNPReLU``, reused by the official FASSD-Net). Children ``bn`` and ``act``."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=MDA_BN_EPS)
        self.act = nn.PReLU(channels)


class MDA(nn.Module):
    """MDA module (FASSD-Net Sec III-C, Fig. 4), applied to the fused decoder/encoder features
    (the preceding 1x1 conv that halves the concatenation is the decoder's, not part of this
    module, matching the official split).

    ``x -> BN-PReLU -> 3x3 conv (C -> C//2)``; then two parallel branches: a plain 3x3 conv
    (details) and a dilated 3x1 + 1x3 pair (context, dilation ``dilation``: 8, 4, 2 from the
    deepest decoder stage to the shallowest); the branches are **summed** (the paper's Fig. 4
    concatenates: we follow the official code, whose weights depend on it), then BN-PReLU, a 1x1
    conv back to C, and the residual sum with ``x``. Every conv is followed by BN (eps 1e-3) and
    PReLU, as in the official code (the paper's figure draws ReLU).
    """

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        half = channels // 2
        act = partial(nn.PReLU, half)
        self.dilation = int(dilation)
        self.pre = BNPReLU(channels)
        self.reduce = ConvBNAct(channels, half, 3, act=act, bn_eps=MDA_BN_EPS)
        self.detail = ConvBNAct(half, half, 3, act=act, bn_eps=MDA_BN_EPS)
        self.context = AsymmetricDilatedConv(half, half, dilation, act=act, bn_eps=MDA_BN_EPS)
        self.post = BNPReLU(half)
        self.expand = nn.Conv2d(half, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.pre(x))
        y = self.post(self.detail(y) + self.context(y))
        return self.expand(y) + x
