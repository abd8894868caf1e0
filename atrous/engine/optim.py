"""SGD with momentum 0.9 and weight decay that skips BatchNorm parameters (RegSeg Sec 4.2: "we do
not decay Batch-Norm parameters") and, optionally, every bias."""
from __future__ import annotations

import torch
from torch import nn

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def param_groups(model: nn.Module, weight_decay: float, decay_bn: bool = False,
                 decay_bias: bool = True) -> list[dict]:
    """Two groups: parameters with ``weight_decay`` and those without (norm layers' weight and bias
    unless ``decay_bn``; every other bias unless ``decay_bias``). Order follows ``model.named_modules``."""
    decay, no_decay = [], []
    for module in model.modules():
        is_norm = isinstance(module, NORM_TYPES)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            skip = (is_norm and not decay_bn) or (name == "bias" and not decay_bias)
            (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, train) -> torch.optim.SGD:
    """SGD of a recipe's ``train`` section (a :class:`~atrous.engine.settings.TrainSettings`)."""
    groups = param_groups(model, train.weight_decay, train.decay_bn, train.decay_bias)
    return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov)
