"""ResNet residual units (He et al. 2016), as DSNet's stem, skip and spatial branch use them
(DSNet Sec 3.2, Fig. 2; the official ``BasicBlock`` / ``Bottleneck`` of DDRNet/PIDNet lineage)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .conv import ConvBNAct


def projection(in_channels: int, out_channels: int, stride: int) -> ConvBNAct | None:
    """The ResNet shortcut: ``1x1 conv (stride) -> BN`` when the shape changes, else ``None``
    (identity)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return ConvBNAct(in_channels, out_channels, 1, stride=stride, act=None)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN (ReLU between), plus the shortcut, then ReLU unless ``act_out=False``.

    ``act_out=False`` is the official ``no_relu`` of the last block of a stage, whose ReLU is
    applied (or not) by the caller. ``dilation`` applies to both 3x3 convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 act_out: bool = True):
        super().__init__()
        self.stride, self.dilation = stride, dilation
        self.conv1 = ConvBNAct(in_channels, out_channels, 3, stride=stride, dilation=dilation)
        self.conv2 = ConvBNAct(out_channels, out_channels, 3, dilation=dilation, act=None)
        self.shortcut = projection(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True) if act_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.conv1(x)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 conv-BN-ReLU to ``mid_channels``, 3x3 conv-BN-ReLU (stride, dilation), 1x1 conv-BN to
    ``out_channels`` (``2 * mid`` in DSNet: the official expansion is 2), plus the shortcut.
    No ReLU after the sum by default (the official ``no_relu=True``)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1,
                 dilation: int = 1, act_out: bool = False):
        super().__init__()
        self.stride, self.dilation = stride, dilation
        self.conv1 = ConvBNAct(in_channels, mid_channels, 1)
        self.conv2 = ConvBNAct(mid_channels, mid_channels, 3, stride=stride, dilation=dilation)
        self.conv3 = ConvBNAct(mid_channels, out_channels, 1, act=None)
        self.shortcut = projection(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True) if act_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv3(self.conv2(self.conv1(x))) + shortcut)


def basic_stage(in_channels: int, out_channels: int, depth: int, stride: int = 1) -> nn.Sequential:
    """``depth`` BasicBlocks, the first with ``stride`` and the width change; the last without its
    final ReLU (the official ``_make_layer``: its caller decides)."""
    if depth < 1:
        raise UserError(f"depth: a stage needs at least one block, got {depth}")
    blocks = [BasicBlock(in_channels if i == 0 else out_channels, out_channels,
                         stride if i == 0 else 1, act_out=(depth == 1 or i < depth - 1))
              for i in range(depth)]
    return nn.Sequential(*blocks)
