"""The train state: everything a checkpoint saves and ``--resume`` restores (RegSeg Sec 4.3:
bitwise-reproducible resumption)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import checkpoint as ckpt
from .ema import EMA


@dataclass
class TrainState:
    """Model (unwrapped), optimizer, AMP scaler, EMA, iteration and the best evaluation so far;
    :meth:`state_dict` adds every random-number generator."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: EMA | None = None
    iteration: int = 0
    best: dict = field(default_factory=lambda: {"score": None, "iter": None, "evaluations": 0})

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and written: the EMA's when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "best": dict(self.best), "rng": ckpt.rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.iteration = int(state["iteration"])
        best = dict(state["best"])
        if "miou" in best:  # checkpoints of atrous 0.1 named the score after the metric
            best["score"] = best.pop("miou")
        self.best = best
        ckpt.set_rng_state(state["rng"])
