"""Loading the authors' released checkpoints into atrous models.

Each family with official code has a module here exposing ``convert(state_dict) -> state_dict``
(official key layout -> ours) and ``CLASSIFIER`` (our key of the final classifier weight, used to
read the number of classes). The registry entry of a model names its module.
"""
from __future__ import annotations

import importlib
import os
import re
from typing import Mapping

import torch
from torch import nn

from ..models.registry import create_model, get_entry


def rename_keys(state_dict: Mapping[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    """Apply ``(pattern, replacement)`` regex rules in order to every key (each rule once)."""
    out = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


def read_checkpoint(checkpoint) -> dict[str, torch.Tensor]:
    """A state dict from a path or a mapping. Files load with ``weights_only=True`` (no pickle code
    runs); ``{'model': sd}``, ``{'state_dict': sd}`` and DataParallel ``module.`` prefixes are
    unwrapped."""
    source = "checkpoint"
    if isinstance(checkpoint, (str, os.PathLike)):
        source = os.fspath(checkpoint)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"checkpoint: no such file {source}")
        try:
            checkpoint = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{source}: not a readable PyTorch checkpoint "
                             f"(loaded with weights_only=True): {exc}") from exc
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"{source}: expected a state dict, got {type(checkpoint).__name__}")
    for wrapper in ("model", "state_dict", "model_state"):
        if wrapper in checkpoint and isinstance(checkpoint[wrapper], Mapping):
            checkpoint = checkpoint[wrapper]
            break
    state = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[key[7:] if key.startswith("module.") else key] = value
    return state


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with one error that lists every missing, unexpected and
    mis-shaped key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshaped:
        lines = [f"{source} does not fit {type(model).__name__}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20])
                             + (" ..." if len(items) > 20 else ""))
        raise KeyError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def key_map(name: str):
    """The official key-map module for registered model ``name``."""
    entry = get_entry(name)
    if entry.official is None:
        raise ValueError(f"{name}: no official code or checkpoints exist for this model")
    return importlib.import_module(f"{__name__}.{entry.official}")


def convert_official(name: str, checkpoint) -> dict[str, torch.Tensor]:
    """The official state dict of ``name`` (path or mapping) in atrous' key layout."""
    return key_map(name).convert(read_checkpoint(checkpoint))


def from_official(name: str, checkpoint, **overrides) -> nn.Module:
    """Model ``name`` with the authors' weights. The number of classes is read from the
    checkpoint's classifier; keys that do not fit raise a KeyError listing them."""
    mapping = key_map(name)
    state = mapping.convert(read_checkpoint(checkpoint))
    if mapping.CLASSIFIER not in state:
        raise KeyError(f"checkpoint for {name}: no classifier weight (expected official key for "
                       f"{mapping.CLASSIFIER!r}); is this a {name} checkpoint?")
    # a key map may ask for config fields the checkpoint implies (e.g. DSNet's training heads)
    implied = mapping.config_overrides(state) if hasattr(mapping, "config_overrides") else {}
    model = create_model(name, num_classes=state[mapping.CLASSIFIER].shape[0], **{**implied, **overrides})
    source = os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "checkpoint"
    load_state_strict(model, state, source)
    return model.eval()
