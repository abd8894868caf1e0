"""Convolution + BatchNorm + activation: the unit every network here is built from."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    """``conv -> BatchNorm -> activation`` (the ConvBnAct of RegSeg's code, Fig. 8's "conv followed
    by BatchNorm and ReLU").

    Padding defaults to "same" for odd kernels: ``dilation * (kernel_size - 1) // 2``. Pass
    ``act=None`` for conv + BN only, and ``conv=`` to wrap a ready-made convolution module (for
    example a :class:`~atrous.nn.DilatedConv`) instead of building an ``nn.Conv2d``.
    Children are named ``conv``, ``bn`` and ``act`` so state dicts read ``*.conv.weight``,
    ``*.bn.running_mean``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        padding: int | tuple[int, int] | None = None,
        conv: nn.Module | None = None,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        if conv is None:
            if padding is None:
                ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
                dl = (dilation, dilation) if isinstance(dilation, int) else dilation
                padding = tuple(d * (k - 1) // 2 for k, d in zip(ks, dl))
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.conv = conv
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        if act is not None:
            self.act = act()

    @property
    def out_channels(self) -> int:
        return self.bn.num_features


def resize_to(x: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``size`` (H, W); a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def crop_to(x: torch.Tensor, size) -> torch.Tensor:
    """The top-left ``size`` (H, W) of ``x``; a no-op when the size already matches (so an
    exported graph has no copying Slice on the common path)."""
    h, w = size
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return x[..., :h, :w]
