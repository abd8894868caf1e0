"""FractionalDilatedConv (RegSeg Sec 3.4, Fig. 7): exact at integer rates, equal to per-tap bilinear
sampling at fractional rates, and differentiable in the rate."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from atrous.nn import FractionalDilatedConv
from atrous.nn.fractional import fractional_conv2d


def bilinear_reference(x, weight, rate, stride=1, groups=1):
    """Deformable-conv definition, tap by tap: sample x at (y*s + i*r, x*s + j*r) with bilinear
    interpolation and zeros outside (grid_sample, align_corners=True), then a grouped 1x1 mix."""
    n, c, h, w = x.shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    ys = torch.arange(ho, dtype=x.dtype) * stride
    xs = torch.arange(wo, dtype=x.dtype) * stride
    out = 0
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            gy, gx = torch.meshgrid(ys + i * rate, xs + j * rate, indexing="ij")
            grid = torch.stack([2 * gx / (w - 1) - 1, 2 * gy / (h - 1) - 1], dim=-1)
            sample = F.grid_sample(x, grid.expand(n, -1, -1, -1), mode="bilinear",
                                   padding_mode="zeros", align_corners=True)
            tap = weight[:, :, i + 1, j + 1, None, None]
            out = out + F.conv2d(sample, tap, groups=groups)
    return out


@pytest.mark.parametrize("rate,stride,groups,size", [
    (1, 1, 1, (9, 11)), (2, 1, 4, (12, 10)), (3, 2, 2, (13, 8)), (5, 1, 8, (7, 9)),
    (14, 1, 8, (10, 12)), (4, 2, 1, (11, 11)), (0, 1, 2, (6, 7))])
@pytest.mark.parametrize("bias", [False, True])
def test_integer_rate_equals_dilated_conv_exactly(rate, stride, groups, size, bias):
    torch.manual_seed(rate)
    conv = nn.Conv2d(16, 8, 3, stride, padding=rate, dilation=rate, groups=groups, bias=bias) if rate else None
    frac = FractionalDilatedConv(16, 8, rate, stride, groups, bias=bias)
    x = torch.randn(2, 16, *size)
    if conv is None:  # rate 0: every tap at the centre, i.e. a 1x1 conv with the summed kernel
        expected = F.conv2d(x, frac.weight.sum(2, keepdim=True).sum(3, keepdim=True), frac.bias, stride, groups=groups)
    else:
        frac.weight, frac.bias = conv.weight, conv.bias
        expected = conv(x)
    with torch.no_grad():  # one term, the bias fused into it as in nn.Conv2d
        assert torch.equal(frac(x), expected)
    if bias:  # with grad for the rate: four terms, then the bias (same value up to rounding)
        torch.testing.assert_close(frac(x), expected, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(frac(x), expected)


@pytest.mark.parametrize("rate,stride,groups", [(1.5, 1, 1), (2.5, 1, 4), (0.3, 2, 2), (3.75, 2, 8),
                                                (6.2, 1, 2), (2.0, 1, 1)])
def test_fractional_rate_equals_bilinear_sampling(rate, stride, groups):
    torch.manual_seed(0)
    frac = FractionalDilatedConv(8, 16, rate, stride, groups).double()
    x = torch.randn(2, 8, 11, 13, dtype=torch.float64)
    rate = frac.rate.item()  # the float32 value the module holds
    expected = bilinear_reference(x, frac.weight.detach(), rate, stride, groups)
    torch.testing.assert_close(frac(x), expected, rtol=1e-10, atol=1e-10)


def test_matches_torchvision_deform_conv2d():
    ops = pytest.importorskip("torchvision.ops")
    torch.manual_seed(0)
    frac = FractionalDilatedConv(4, 6, 2.3, 1, groups=2).double()
    rate = frac.rate.item()
    x = torch.randn(1, 4, 9, 10, dtype=torch.float64)
    offsets = torch.tensor([[i * (rate - 1), j * (rate - 1)] for i in (-1, 0, 1) for j in (-1, 0, 1)],
                           dtype=torch.float64).reshape(1, 18, 1, 1).expand(1, 18, 9, 10)
    expected = ops.deform_conv2d(x, offsets, frac.weight.detach(), padding=1)
    torch.testing.assert_close(frac(x), expected)


@pytest.mark.parametrize("rate", [1.3, 2.7, 0.6, 9.45])
def test_rate_gradient_matches_finite_difference(rate):
    torch.manual_seed(1)
    frac = FractionalDilatedConv(8, 8, rate, 1, 2).double()
    x = torch.randn(1, 8, 12, 12, dtype=torch.float64)
    target = torch.randn(1, 8, 12, 12, dtype=torch.float64)

    def loss_at(r):
        with torch.no_grad():
            frac.rate.fill_(r)
        return (frac(x) - target).square().mean()

    loss = loss_at(rate)
    loss.backward()
    eps = 1e-6
    numeric = (loss_at(rate + eps).item() - loss_at(rate - eps).item()) / (2 * eps)
    assert frac.rate.grad is not None and frac.rate.grad.abs() > 1e-6
    assert frac.rate.grad.item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_from_conv_shares_weights_and_rejects_other_convs():
    conv = nn.Conv2d(8, 8, 3, padding=3, dilation=3, groups=4, bias=False)
    frac = FractionalDilatedConv.from_conv(conv)
    assert frac.weight is conv.weight and frac.rate.item() == 3.0
    x = torch.randn(1, 8, 10, 10)
    assert torch.equal(frac(x), conv(x))
    with pytest.raises(ValueError, match="conv:"):
        FractionalDilatedConv.from_conv(nn.Conv2d(8, 8, 3, padding=1, dilation=2))
    with pytest.raises(ValueError, match="rate"):
        FractionalDilatedConv(8, 8, -1.0)
    with pytest.raises(ValueError, match="3x3"):
        fractional_conv2d(x, torch.randn(8, 8, 5, 5), torch.tensor(1.0))
