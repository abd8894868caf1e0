"""Exponential moving average of the weights (RegSeg Sec 4.2, ImageNet-pretrained recipe: "EMA with
alpha 0.0031 and update every 32 iterations"): every ``every`` optimizer steps,
``ema = (1 - alpha) * ema + alpha * model`` for every floating-point parameter and buffer
(BatchNorm running statistics included); integer buffers are copied."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import UserError


class EMA:
    def __init__(self, model: nn.Module, alpha: float = 0.0031, every: int = 32):
        if not 0 < alpha <= 1:
            raise UserError(f"train.ema.alpha: expected a value in (0, 1], got {alpha}")
        if every < 1:
            raise UserError(f"train.ema.every: expected a positive integer, got {every}")
        self.alpha, self.every = float(alpha), int(every)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> bool:
        """Call after optimizer step number ``step`` (1-based); averages when ``step % every == 0``."""
        if step % self.every:
            return False
        current = model.state_dict()
        for key, avg in self.module.state_dict().items():
            value = current[key].detach()
            if avg.is_floating_point():
                avg.mul_(1.0 - self.alpha).add_(value.to(avg.dtype), alpha=self.alpha)
            else:
                avg.copy_(value)
        return True

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
