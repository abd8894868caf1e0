"""RegSeg's dilated block (RegSeg Sec 3.2, Fig. 4)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from .conv import ConvBNAct
from .se import SE


class DilatedConv(nn.Module):
    """Grouped 3x3 convolution whose channels are split into equal parts, one dilation rate per
    part (the "different dilation rates to different groups" of RegSeg Sec 3.2, Fig. 4b).

    ``channels`` is split into ``len(dilations)`` equal chunks; each chunk gets a grouped conv with
    group width ``group_width``. One dilation is a plain grouped conv. The split uses
    ``torch.split`` with static sizes, which exports to ONNX as ``Split`` (the official
    ``tensor_split`` did not export).
    """

    def __init__(self, channels: int, dilations: Sequence[int], group_width: int, stride: int = 1):
        super().__init__()
        n = len(dilations)
        if n == 0:
            raise UserError("dilations: need at least one dilation rate")
        if channels % n:
            raise UserError(f"dilations: {channels} channels do not split into {n} equal branches")
        width = channels // n
        if width % group_width:
            raise UserError(f"group_width: {group_width} does not divide the branch width {width}")
        self.dilations = tuple(int(d) for d in dilations)
        self.stride = stride
        self.split_sizes = [width] * n
        self.branches = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride, padding=d, dilation=d, groups=width // group_width, bias=False)
            for d in self.dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.branches) == 1:
            return self.branches[0](x)
        parts = torch.split(x, self.split_sizes, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.branches, parts)], dim=1)


class Shortcut(nn.Module):
    """Projection shortcut of the D block: ``avgpool(2, ceil_mode) -> 1x1 conv -> BN`` when the
    block has stride 2 (ResNet-D style, RegSeg Sec 3.2, Fig. 4c), ``1x1 conv -> BN`` when only the
    width changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride != 1 else nn.Identity()
        self.proj = ConvBNAct(in_channels, out_channels, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class DBlock(nn.Module):
    """D block (RegSeg Sec 3.2, Fig. 4b/4c): 1x1 conv-BN-ReLU, :class:`DilatedConv`-BN-ReLU, SE,
    1x1 conv-BN, sum with the shortcut, ReLU. With one dilation of 1 it is RegNet's Y block
    (Fig. 4a). Any number of branches works (Table 4 uses four).

    SE's hidden width is ``in_channels // 4`` as in the official code.
    """

    def __init__(self, in_channels: int, out_channels: int, dilations: Sequence[int],
                 group_width: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.dilations = tuple(dilations)
        self.conv1 = ConvBNAct(in_channels, out_channels, 1)
        self.conv2 = ConvBNAct(out_channels, out_channels,
                               conv=DilatedConv(out_channels, dilations, group_width, stride))
        self.se = SE(out_channels, in_channels // 4)
        self.conv3 = ConvBNAct(out_channels, out_channels, 1, act=None)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = Shortcut(in_channels, out_channels, stride) if needs_projection else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        x = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act(x + shortcut)
