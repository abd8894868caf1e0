"""Learning-rate schedule: poly decay per iteration with a linear warmup (RegSeg Sec 4.2; DSNet,
DWRSeg and FASSD-Net use the same poly policy with power 0.9 and no warmup)."""
from __future__ import annotations

import torch


def lr_factor(iteration: int, max_iters: int, power: float = 0.9, warmup_iters: int = 0,
              warmup_factor: float = 0.1) -> float:
    """Multiplier of the base lr at ``iteration`` (0-based, before that iteration's step):
    ``(1 - it / max_iters) ** power``, times a linear ramp from ``warmup_factor`` to 1 over the
    first ``warmup_iters`` iterations (RegSeg: from 0.1 lr to lr over 3000 iterations)."""
    if not 0 <= iteration <= max_iters:
        raise ValueError(f"iteration {iteration} is outside [0, {max_iters}]")
    factor = (1.0 - iteration / max_iters) ** power
    if iteration < warmup_iters:
        factor *= warmup_factor + (1.0 - warmup_factor) * iteration / warmup_iters
    return factor


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every group's lr to ``base_lr * factor``, times the group's ``lr_scale`` if it has one
    (e.g. the dilation rates of ``atrous search``); returns the unscaled lr."""
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
