"""DSNet's Multi-Scale Attention Fusion (DSNet Sec 3.4, Fig. 4, Eq. 1-5)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .conv import ConvBNAct


class Gonv(nn.Sequential):
    """The "GONV" of DSNet Eq. 2-3: channel compression and expansion, ``1x1 conv (bias)-BN-ReLU``
    to ``channels // reduction`` then ``1x1 conv (bias)-BN`` back (as in the official code)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise UserError(f"reduction: {reduction} leaves no channels of {channels}")
        self.squeeze = ConvBNAct(channels, hidden, 1, bias=True)
        self.expand = ConvBNAct(hidden, channels, 1, bias=True, act=None)


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def region_pool(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(x, grid)``. While exporting (ONNX/tracing) it is two matrix products
    with averaging matrices over PyTorch's adaptive bins, ``[floor(i*H/g), ceil((i+1)*H/g))``:
    the ONNX exporter cannot export adaptive pooling whose grid does not divide the map, nor
    when it cannot see the input size. The graph is then fixed to the traced size."""
    if grid == 1 or not _exporting():
        return nn.functional.adaptive_avg_pool2d(x, grid)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    return averaging_matrix(grid, h, x) @ x @ averaging_matrix(grid, w, x).t()


def region_unpool(x: torch.Tensor, size) -> torch.Tensor:
    """``interpolate(x, size, mode="nearest")``; while exporting, products with one-hot matrices
    of PyTorch's nearest indices ``min(floor(j * (g / H)), g - 1)`` (float32), so that the graph
    keeps static shapes."""
    if not _exporting():
        return nn.functional.interpolate(x, size=size, mode="nearest")
    h, w = int(size[0]), int(size[1])
    return nearest_matrix(h, x) @ x @ nearest_matrix(w, x, dim=-1).t()


def averaging_matrix(grid: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """``grid x size``: row i averages the adaptive-pooling bin i of a length-``size`` axis."""
    m = torch.zeros(grid, size, dtype=like.dtype, device=like.device)
    for i in range(grid):
        start, end = (i * size) // grid, -(-(i + 1) * size // grid)
        m[i, start:end] = 1.0 / (end - start)
    return m


def nearest_matrix(size: int, x: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """``size x g`` one-hot: output j takes input cell ``min(floor(j * scale), g - 1)`` with
    ``scale = g / size`` in float32, as PyTorch's nearest upsampling (``g = x.shape[dim]``)."""
    grid = int(x.shape[dim])
    scale = np.float32(grid) / np.float32(size)
    index = np.minimum(np.floor(np.arange(size, dtype=np.float32) * scale).astype(np.int64), grid - 1)
    m = torch.zeros(size, grid, dtype=x.dtype, device=x.device)
    m[torch.arange(size), torch.from_numpy(index)] = 1.0
    return m


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
            region = gonv(region_pool(fused, grid))
            if grid != 1:
                region = region_unpool(region, size)
            logits = logits + region
        return torch.sigmoid(logits)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        a = self.attention(spatial + context)
        return self.scale * spatial * a + self.scale * context * (1 - a)
