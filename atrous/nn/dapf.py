"""Dilated Asymmetric Pyramidal Fusion (FASSD-Net Sec III-B, Fig. 3)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from .conv import ConvBNAct


class AsymmetricDilatedConv(nn.Sequential):
    """A 3x3 dilated convolution factorized into a 3x1 then a 1x3 convolution, both with dilation
    ``dilation`` along their long axis, each followed by BN and the activation (FASSD-Net Sec
    III-B: "two consecutive 1D atrous convolutions"; Fig. 3: "each convolution is followed by its
    batch normalization and activation"). Children ``conv3x1`` and ``conv1x3``."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, act=nn.ReLU,
                 bn_eps: float = 1e-5):
        super().__init__()
        self.dilation = int(dilation)
        self.conv3x1 = ConvBNAct(in_channels, out_channels, (3, 1), dilation=(dilation, 1), act=act,
                                 bn_eps=bn_eps)
        self.conv1x3 = ConvBNAct(out_channels, out_channels, (1, 3), dilation=(1, dilation), act=act,
                                 bn_eps=bn_eps)


class DAPF(nn.Module):
    """DAPF (FASSD-Net Sec III-B, Fig. 3): ASPP without the image-pooling branch, each 3x3 atrous
    conv factorized into :class:`AsymmetricDilatedConv`, and every branch ``in_channels // alpha``
    wide (compression factor alpha = 2 in the paper). A 1x1 branch and one asymmetric branch per
    dilation (12, 24, 36 as in the official code) are concatenated and fused by a 1x1 conv back to
    ``in_channels``; all convs are followed by BN and ReLU.
    """

    def __init__(self, in_channels: int, alpha: int = 2, dilations: Sequence[int] = (12, 24, 36)):
        super().__init__()
        if alpha < 1 or in_channels % alpha:
            raise UserError(f"alpha: {alpha} must be >= 1 and divide the {in_channels} input channels")
        width = in_channels // alpha
        self.dilations = tuple(int(d) for d in dilations)
        self.project = ConvBNAct(in_channels, width, 1)
        self.branches = nn.ModuleList(AsymmetricDilatedConv(in_channels, width, d) for d in self.dilations)
        self.fuse = ConvBNAct(width * (1 + len(self.dilations)), in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.project(x), *(branch(x) for branch in self.branches)], dim=1))
