"""DWRSeg's blocks: the dilation-wise residual (DWR) module, the simple inverted residual (SIR)
module and the stem (DWRSeg Sec 3.2-3.4, Fig. 4 and 6a).

No official code exists for DWRSeg; where the paper leaves a detail open, the choice made here is
listed in docs/deviations.md (section DWRSeg).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from .conv import ConvBNAct
from .dblock import Shortcut


def residual_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity path of a residual module: identity; a 2x2 ceil-mode average pool when the
    module has stride 2; :class:`~atrous.nn.Shortcut` (pool + 1x1 conv + BN) when the width
    changes."""
    if in_channels != out_channels:
        return Shortcut(in_channels, out_channels, stride)
    if stride != 1:
        return nn.AvgPool2d(2, 2, ceil_mode=True)
    return nn.Identity()


class DWRBlock(nn.Module):
    """Dilation-wise residual module (DWRSeg Sec 3.2, Fig. 4a).

    * Step I, region residualization: 3x3 conv + BN + ReLU from ``in_channels`` to
      ``round(expansion * out_channels)`` channels (``expansion`` is the paper's beta, 1.5 in the
      3-branch module; Table 2 Expt. III).
    * Step II, semantic residualization: those channels are divided into ``len(dilations)`` equal
      groups and each group gets one depth-wise 3x3 conv with its own dilation ("only one single
      desired receptive field is applied to each channel"). The output channel ratio of the
      branches (the paper's alpha, 2:1:1; Table 2 Expt. II) is realised by each branch's
      depth-wise channel multiplier: with ``ratio=(2, 1, 1)`` the dilation-1 branch has twice the
      output channels of the others ("the output channel capacity of the first branch is expanded
      to be twice that of other branches").
    * The branch outputs are concatenated, batch-normalised (one BN over the concatenation: per
      channel, it is the branches' BNs), merged by a 1x1 conv (with bias: no BN follows it,
      Table 2 "Sitch 5") and added to the input.

    ``stride=2`` puts the stride on the region conv; the input then reaches the sum through
    :func:`residual_shortcut`.
    """

    def __init__(self, in_channels: int, out_channels: int, dilations: Sequence[int] = (1, 3, 5),
                 expansion: float = 1.5, ratio: Sequence[int] | None = None, stride: int = 1):
        super().__init__()
        self.dilations = tuple(int(d) for d in dilations)
        n = len(self.dilations)
        if n == 0:
            raise UserError("dilations: need at least one dilation rate")
        self.ratio = tuple(int(r) for r in ratio) if ratio is not None else (2,) + (1,) * (n - 1)
        if len(self.ratio) != n or min(self.ratio) < 1:
            raise UserError(f"ratio: expected {n} positive integers (one per dilation), got {self.ratio}")
        region = round(expansion * out_channels)
        if region < n or region % n:
            raise UserError(f"expansion: {expansion} x {out_channels} = {region} region channels "
                             f"do not divide into {n} equal groups")
        group = region // n
        self.stride = stride
        self.split_sizes = [group] * n
        self.region = ConvBNAct(in_channels, region, 3, stride=stride)
        self.semantic = nn.ModuleList(
            nn.Conv2d(group, group * m, 3, padding=d, dilation=d, groups=group, bias=False)
            for d, m in zip(self.dilations, self.ratio))
        merged = group * sum(self.ratio)
        self.bn = nn.BatchNorm2d(merged)
        self.fuse = nn.Conv2d(merged, out_channels, 1, bias=True)
        self.shortcut = residual_shortcut(in_channels, out_channels, stride)

    @property
    def branch_channels(self) -> tuple[int, ...]:
        """Output channels of each semantic-residualization branch (e.g. 128, 64, 64)."""
        return tuple(conv.out_channels for conv in self.semantic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(self.region(x), self.split_sizes, dim=1)
        y = torch.cat([conv(p) for conv, p in zip(self.semantic, parts)], dim=1)
        return self.fuse(self.bn(y)) + self.shortcut(x)


class SIRBlock(nn.Module):
    """Simple inverted residual module (DWRSeg Sec 3.3, Fig. 4b): the DWR module with only its
    first branch and without the depth-wise conv of semantic residualization: 3x3 conv + BN + ReLU
    expanding to ``expansion * out_channels`` (the paper's lambda = 3, Table 2 Expt. VI), the
    BN of the DWR module's aggregation, a 1x1 conv back to ``out_channels`` (with bias) and the sum
    with the input."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 3, stride: int = 1):
        super().__init__()
        hidden = int(expansion * out_channels)
        self.stride = stride
        self.region = ConvBNAct(in_channels, hidden, 3, stride=stride)
        self.bn = nn.BatchNorm2d(hidden)
        self.fuse = nn.Conv2d(hidden, out_channels, 1, bias=True)
        self.shortcut = residual_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.bn(self.region(x))) + self.shortcut(x)


class StemBlock(nn.Module):
    """BiSeNetV2's stem block with DWRSeg's two changes (DWRSeg Sec 3.4, Fig. 6a): 3x3 stride-2
    conv + BN to ``out_channels / 2`` *without* activation (change 1); a branch of 1x1 conv to
    ``out_channels / 4`` and 3x3 stride-2 conv back to ``out_channels / 2`` beside a 3x3 stride-2
    max pool; concatenation (``out_channels``) and a 3x3 conv that keeps ``out_channels`` (change 2:
    BiSeNetV2's last conv halves them). Output at 1/4, rounded up for odd sizes."""

    def __init__(self, out_channels: int = 64, in_channels: int = 3):
        super().__init__()
        if out_channels % 4:
            raise UserError(f"stem_width: {out_channels} is not a multiple of 4")
        half = out_channels // 2
        self.conv = ConvBNAct(in_channels, half, 3, stride=2, act=None)
        self.left = nn.Sequential(ConvBNAct(half, half // 2, 1), ConvBNAct(half // 2, half, 3, stride=2))
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.fuse = ConvBNAct(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.pool(x)], dim=1))
