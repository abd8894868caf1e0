"""BatchNorm whose batch statistics span every process, on any backend (gloo on CPU included).

torch's ``nn.SyncBatchNorm`` runs on GPUs only; :class:`SyncBatchNorm2d` is the same computation
for CPU tensors (``train.sync_bn: true`` under gloo). In training its forward all-reduces one
packed tensor of per-channel sums, sums of squares and counts, so every process normalises with
the mean and (biased) variance of the global batch and updates the running statistics with the
global mean and the unbiased variance of the global count, as torch's SyncBatchNorm does. Its
backward all-reduces the per-channel sums of ``dy`` and ``dy * x_hat`` (again as SyncBatchNorm),
so the input gradient is that of BatchNorm over the global batch; the weight and bias gradients
stay per process and DistributedDataParallel averages them. With one process (or none initialised)
it is BatchNorm's math (tested against BatchNorm2d in float64). In eval mode it is plain
BatchNorm, and its state dict has BatchNorm2d's layout, so weights move freely between synced and
plain models.

Sums are accumulated in float64, so ``E[x^2] - E[x]^2`` does not lose the variance of channels
whose mean is large against their spread.
"""
from __future__ import annotations

import torch
from torch import nn

from .distributed import sum_over_processes


def _channel_view(vector: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel vector shaped to broadcast over N x C x ... inputs."""
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


class SyncBatchNormFunction(torch.autograd.Function):
    """Training-mode BatchNorm over the inputs of every process in ``group`` (see the module
    docstring); ``running_mean``/``running_var`` (or None) are updated in place with
    ``momentum``. Half-precision inputs are normalised in float32 and returned in their dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps: float, momentum: float, group):
        channels, dims = x.shape[1], [0] + list(range(2, x.dim()))
        wide = x.double()
        packed = torch.cat([wide.sum(dims), (wide * wide).sum(dims),
                            torch.tensor([x.numel() / channels], dtype=torch.float64, device=x.device)])
        del wide
        packed = sum_over_processes(packed, group)
        count = packed[-1]
        if float(count) <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")
        mean = packed[:channels] / count
        var = (packed[channels:2 * channels] / count - mean * mean).clamp_(min=0.0)
        if running_mean is not None:
            running_mean.mul_(1.0 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            unbiased = var * (count / (count - 1))
            running_var.mul_(1.0 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        work = torch.promote_types(x.dtype, torch.float32)
        mean, invstd = mean.to(work), torch.rsqrt(var + eps).to(work)
        scale = invstd if weight is None else invstd * weight.to(work)
        out = (x.to(work) - _channel_view(mean, x.dim())) * _channel_view(scale, x.dim())
        if bias is not None:
            out = out + _channel_view(bias.to(work), x.dim())
        ctx.save_for_backward(x, weight, mean, invstd, count)
        ctx.group = group
        ctx.param_dtype = (weight if weight is not None else bias if bias is not None else x).dtype
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, invstd, count = ctx.saved_tensors
        channels, dims, ndim = x.shape[1], [0] + list(range(2, x.dim())), x.dim()
        dy = grad_out.to(mean.dtype)
        x_hat = (x.to(mean.dtype) - _channel_view(mean, ndim)) * _channel_view(invstd, ndim)
        sum_dy = dy.sum(dims, dtype=torch.float64)
        sum_dy_xhat = (dy * x_hat).sum(dims, dtype=torch.float64)
        grad_weight = sum_dy_xhat.to(ctx.param_dtype) if ctx.needs_input_grad[1] else None
        grad_bias = sum_dy.to(ctx.param_dtype) if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:  # the sums over every process: gradient of the global batch
            packed = sum_over_processes(torch.cat([sum_dy, sum_dy_xhat]), ctx.group) / count
            mean_dy, mean_dy_xhat = packed[:channels].to(mean.dtype), packed[channels:].to(mean.dtype)
            scale = invstd if weight is None else invstd * weight.to(mean.dtype)
            grad_x = ((dy - _channel_view(mean_dy, ndim) - x_hat * _channel_view(mean_dy_xhat, ndim))
                      * _channel_view(scale, ndim)).to(x.dtype)
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics span the processes of ``process_group`` (the
    default group when None) on any device; see the module docstring."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # plain BatchNorm: running statistics, or this batch's without them
            return super().forward(x)
        self._check_input_dim(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
        running = self.track_running_stats
        return SyncBatchNormFunction.apply(x, self.weight, self.bias, self.running_mean if running else None,
                                           self.running_var if running else None, self.eps, momentum,
                                           self.process_group)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Every ``nn.BatchNorm2d`` in ``module`` (in place below the root) replaced by a
    :class:`SyncBatchNorm2d` holding the same parameter and buffer tensors, so an optimizer built
    before the conversion keeps training them; returns the (possibly new) root."""
    if type(module) is nn.BatchNorm2d:
        synced = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats, process_group)
        if module.affine:
            synced.weight, synced.bias = module.weight, module.bias
        if module.track_running_stats:
            synced.running_mean, synced.running_var = module.running_mean, module.running_var
            synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child, process_group)
        if converted is not child:
            setattr(module, name, converted)
    return module
