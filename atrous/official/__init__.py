"""Key maps from the authors' released checkpoints to atrous' state-dict layout.

Each family with official code has one :class:`KeyMap` (``official/regseg.py``,
``official/dsnet.py``, ``official/fassdnet.py``); the registry entry of a model holds it. Reading
files and loading them into models is :mod:`atrous.weights`' job.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

import torch


def rename_keys(state_dict: Mapping[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    """Apply ``(pattern, replacement)`` regex rules in order to every key (each rule once)."""
    out = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


@dataclass(frozen=True)
class KeyMap:
    """The official key layout of one family -> ours.

    ``rules`` are ``(regex, replacement)`` pairs applied in order. ``wrapper_prefix``: training
    checkpoints that prefix every model key (DSNet's ``FullModel``: ``model.``) keep only those
    keys, prefix removed. ``implied_options`` reads config fields a checkpoint implies (DSNet: its
    training heads present or not). ``imagenet_prefix``: the authors' ImageNet encoder file names
    its keys without this prefix of the segmentation checkpoint (FASSD-Net's HarDNet-68
    ``imagenet_weights.pth``: ``0.conv.weight`` for ``base.0.conv.weight``)."""

    family: str
    repository: str
    rules: tuple
    wrapper_prefix: str | None = None
    implied_options: Callable[[Mapping[str, torch.Tensor]], dict] | None = None
    imagenet_prefix: str | None = None

    def convert(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = self.wrapper_prefix
        if prefix and any(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        return rename_keys(state_dict, self.rules)

    def layouts(self, state_dict: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The readings of a file in atrous' layout this map can give: the segmentation
        checkpoint's, and the ImageNet encoder file's where the family has one."""
        found = [self.convert(state_dict)]
        if self.imagenet_prefix:
            found.append(self.convert({self.imagenet_prefix + k: v for k, v in state_dict.items()}))
        return found

    def options_for(self, converted: Mapping[str, torch.Tensor]) -> dict:
        return self.implied_options(converted) if self.implied_options else {}
