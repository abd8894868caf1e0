"""Precise BatchNorm statistics (the official RegSeg trainer's ``bn_precise_stats``, after
pycls and "Rethinking 'Batch' in BatchNorm", Wu & Johnson 2021): the running statistics that the
exponential average of training leaves behind are replaced by the average of the per-batch mean
and variance over ``batches`` training batches, computed with the final weights (no gradient, no
weight change)."""
from __future__ import annotations

import itertools

import torch
from torch import nn


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches, count: int, device) -> int:
    """Replace every BatchNorm's running mean and variance in ``model`` by their average over the
    first ``count`` of ``batches`` (images, targets); returns the number of batches used. The
    model's mode and each BatchNorm's momentum are restored."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or count < 1:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in norms]
    means = [torch.zeros_like(bn.running_mean) for bn in norms]
    variances = [torch.zeros_like(bn.running_var) for bn in norms]
    model.train()
    used = 0
    try:
        for bn in norms:
            bn.momentum = 1.0  # the running statistics become this batch's
        for images, _ in itertools.islice(batches, count):
            model(images.to(device))
            used += 1
            for bn, mean, var in zip(norms, means, variances):
                mean += bn.running_mean
                var += bn.running_var
        if used:
            for bn, mean, var in zip(norms, means, variances):
                bn.running_mean.copy_(mean / used)
                bn.running_var.copy_(var / used)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.train(was_training)
    return used
