"""3x3 convolution with a trainable, fractional dilation rate (RegSeg Sec 3.4, Fig. 7).

RegSeg relaxes each dilation rate r to a float and samples the 3x3 taps at offsets ``(i*r, j*r)``,
``i, j in {-1, 0, 1}``, with bilinear interpolation (a deformable convolution whose offsets come
from r). atrous computes exactly the same function with ordinary convolutions, no deformable-conv
kernel needed.

Why integer-dilation convolutions are exact
-------------------------------------------
Write ``r = n + f`` with ``n = floor(r)`` and ``0 <= f < 1``. Along one axis, bilinear sampling at
the fractional offset ``i*r`` reads:

* ``i = +1``: offset ``n + f`` lies between ``n`` and ``n + 1``:
  ``(1 - f) * x[n] + f * x[n + 1]``;
* ``i = -1``: offset ``-n - f`` lies between ``-n - 1`` and ``-n`` with fraction ``1 - f``
  above ``-n - 1``: ``f * x[-n - 1] + (1 - f) * x[-n]``;
* ``i = 0``: ``x[0] = (1 - f) * x[0*n] + f * x[0*(n + 1)]``.

So for every tap ``i``, the sample is ``sum_a alpha_a * x[i*a]`` over ``a in {n, n + 1}`` with
``alpha_n = 1 - f``, ``alpha_{n+1} = f``: the same two weights for all three taps. Bilinear
interpolation in 2D is the product of the 1D weights, so the sample of tap ``(i, j)`` is
``sum_{a, b} alpha_a * alpha_b * x[y + i*a, x + j*b]``, with ``(a, b)`` over the same four pairs
for every tap. Summing ``W[i, j] * sample(i, j)`` over the taps and exchanging the sums:

    FracConv(x; W, r) = sum_{a, b in {n, n+1}} alpha_a * alpha_b * Conv(x; W, dilation=(a, b))

with each convolution zero-padded by its own dilation. Zero padding matches the deformable
convolution's bilinear sampling, which reads zero for every corner outside the image.

Four 3x3 convolutions read 36 taps, but only 25 positions are distinct: the centre row and column
are shared. :func:`fractional_conv2d` therefore splits each axis into a *near* part (taps
``-n, 0, n`` with weights ``1 - f, 1, 1 - f``) and a *far* part (taps ``-(n + 1), n + 1`` with
weight ``f``; the centre tap has no far part), so that the 1D sample of tap ``i`` is
``near_i * x[i*n] + far_i * x[i*(n + 1)]``. The far part is a 2-tap kernel of dilation
``2 * (n + 1)`` padded by ``n + 1``. The four products of parts are four convolutions with 3x3,
3x2, 2x3 and 2x2 kernels: 25 taps, each position once. All four have the output size
``floor((H - 1) / s) + 1`` for stride s. At integer r, ``f = 0``: the near kernel is ``W`` times
ones and the far terms are zero, so the result is ``Conv(x; W, dilation=r)`` bit for bit
(``1 * w = w`` and ``c + 0 = c`` in floating point). ``d/dr = d/df`` is the derivative of a
quadratic in ``f``, so gradients reach r (at integer r they are the one-sided derivative from
above, as the bilinear weights are piecewise linear).

Dilation 0 (``r < 1``) samples every tap of that axis at the centre: the kernel is summed along
that axis and applied as a 1-wide kernel. r is clamped at 0 (a negative rate mirrors the kernel,
which is not a dilation).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError


def _axis_parts(n: int, f: torch.Tensor) -> tuple[tuple, tuple]:
    """The two parts of one axis of the bilinear sampling at ``i * (n + f)``, ``i in {-1, 0, 1}``:
    ``(taps, weights, dilation)`` for the part at distance ``n`` (all three taps, weights
    ``(1 - f, 1, 1 - f)``) and for the part at distance ``n + 1`` (the outer taps only, weight ``f``,
    as a 2-tap kernel of dilation ``2 * (n + 1)``)."""
    near = (slice(0, 3), torch.stack([1 - f, torch.ones_like(f), 1 - f]), n)
    far = (slice(0, 3, 2), torch.stack([f, f]), 2 * (n + 1))
    return near, far


def _term(x: torch.Tensor, weight: torch.Tensor, rows: tuple, cols: tuple, stride: int,
          groups: int) -> torch.Tensor:
    """One convolution of the sum: the taps ``rows`` x ``cols`` of ``weight``, scaled by the outer
    product of their 1D weights, at their dilations (a dilation of 0 sums that axis of the kernel)."""
    (row_taps, row_w, row_d), (col_taps, col_w, col_d) = rows, cols
    w = weight[:, :, row_taps, col_taps] * (row_w[:, None] * col_w[None, :])  # scale the small kernel
    if row_d == 0:
        w = w.sum(dim=2, keepdim=True)
    if col_d == 0:
        w = w.sum(dim=3, keepdim=True)
    pad = tuple(d // 2 if k == 2 else d for d, k in ((row_d, w.shape[2]), (col_d, w.shape[3])))
    return F.conv2d(x, w, None, stride, pad, (max(row_d, 1), max(col_d, 1)), groups)


def fractional_conv2d(x: torch.Tensor, weight: torch.Tensor, rate: torch.Tensor, stride: int = 1,
                      groups: int = 1, bias: torch.Tensor | None = None) -> torch.Tensor:
    """3x3 convolution of ``x`` sampled at offsets ``(i*rate, j*rate)`` with bilinear interpolation
    and zero padding, as the sum of four integer-dilation convolutions over the 25 distinct
    positions (module docstring).

    ``rate`` is a 0-d tensor (gradients flow to it). At an integer rate with no gradient needed for
    ``rate`` (eval, or a frozen rate), one ``F.conv2d`` call runs, identical to
    ``nn.Conv2d(..., dilation=r, padding=r)`` even with a bias; otherwise all four terms run (at
    ``f = 0`` the far terms are zero, which still gives the conv's output bit for bit).
    """
    if weight.shape[-2:] != (3, 3):
        raise UserError(f"weight: expected a 3x3 kernel, got {tuple(weight.shape[-2:])}")
    rate = rate.clamp(min=0)
    n = int(math.floor(float(rate.detach())))
    f = rate - n
    need_all = torch.is_grad_enabled() and rate.requires_grad
    if not need_all and float(f) == 0.0:  # integer rate: exactly the dilated conv (bias fused)
        return F.conv2d(x, weight, bias, stride, n, n, groups) if n else \
            F.conv2d(x, weight.sum(dim=2, keepdim=True).sum(dim=3, keepdim=True), bias, stride, 0, 1, groups)
    near, far = _axis_parts(n, f)
    out = _term(x, weight, near, near, stride, groups)
    for rows, cols in ((near, far), (far, near), (far, far)):
        out = out + _term(x, weight, rows, cols, stride, groups)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class FractionalDilatedConv(nn.Module):
    """(Grouped) 3x3 convolution whose dilation is one trainable float ``rate`` (RegSeg Sec 3.4,
    Fig. 7): the deformable-conv relaxation of a dilated conv, computed exactly by
    :func:`fractional_conv2d` without a deformable-conv kernel.

    Drop-in for ``nn.Conv2d(in, out, 3, stride, padding=r, dilation=r, groups=groups)``; the
    state dict is that conv's (``weight``, ``bias``) plus ``rate``. ``rate`` is an
    ``nn.Parameter`` of shape () so an optimizer can give it its own learning rate and no weight
    decay (``atrous search`` does: :class:`atrous.search.SearchHooks`).
    """

    def __init__(self, in_channels: int, out_channels: int, rate: float, stride: int = 1,
                 groups: int = 1, bias: bool = False):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise UserError(f"groups: {groups} must divide in_channels {in_channels} and "
                             f"out_channels {out_channels}")
        if not float(rate) >= 0:
            raise UserError(f"rate: expected a dilation rate >= 0, got {rate}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.groups = stride, groups
        conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, 1, groups, bias)  # default init
        self.weight = conv.weight
        self.bias = conv.bias
        self.rate = nn.Parameter(torch.tensor(float(rate)))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rate: float | None = None) -> "FractionalDilatedConv":
        """The fractional conv computing what ``conv`` (3x3, square dilation = padding) computes,
        sharing its weight and bias tensors; ``rate`` defaults to ``conv``'s dilation."""
        if conv.kernel_size != (3, 3) or conv.dilation[0] != conv.dilation[1] \
                or conv.padding != conv.dilation or conv.stride[0] != conv.stride[1]:
            raise UserError(f"conv: expected a 3x3 conv with padding == dilation, square stride "
                             f"and dilation, got {conv}")
        module = cls(conv.in_channels, conv.out_channels, conv.dilation[0] if rate is None else rate,
                     conv.stride[0], conv.groups, conv.bias is not None)
        module.weight = conv.weight
        module.bias = conv.bias
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fractional_conv2d(x, self.weight, self.rate, self.stride, self.groups, self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, rate={float(self.rate.detach()):.4g}, "
                f"stride={self.stride}, groups={self.groups}, bias={self.bias is not None}")
