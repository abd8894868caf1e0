"""Loading a registered model with weights for inference, export, benchmarking or quantization.

Our own weights are safetensors files (written by ``atrous convert`` or by training) whose metadata
names the model and its number of classes; the authors' ``.pth`` checkpoints go through
:func:`atrous.official.from_official`.
"""
from __future__ import annotations

import os
import warnings

from torch import nn

from ..models import create_model, get_entry
from ..official import from_official, load_state_strict


def read_safetensors(path: str | os.PathLike):
    """``(state_dict, metadata)`` of a safetensors file; metadata is ``{}`` when absent."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights: no such file {path}")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(path), metadata
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a readable safetensors file: {exc}") from exc


def load_model(name: str, weights: str | os.PathLike | None = None, num_classes: int | None = None,
               warn_untrained: bool = True) -> nn.Module:
    """Registered model ``name`` in eval mode, with ``weights`` loaded.

    * ``.safetensors``: the metadata's ``model`` must match ``name`` when present, and its
      ``num_classes`` sets the number of classes (``num_classes`` overrides it when given).
    * anything else (``.pth``, ``.pt``): the authors' checkpoint, converted by the model's key map.
    * ``None``: initial (untrained) weights, with a warning unless ``warn_untrained`` is False.
    """
    get_entry(name)  # unknown names fail here with the list of valid ones
    if weights is None:
        if warn_untrained:
            warnings.warn(f"{name}: no --weights given; using initial (untrained) weights", stacklevel=2)
        return create_model(name, num_classes=num_classes).eval()
    path = os.fspath(weights)
    if not path.endswith(".safetensors"):
        return from_official(name, path)
    state, metadata = read_safetensors(path)
    saved = metadata.get("model")
    if saved and saved != name:
        raise ValueError(f"{path}: holds weights of {saved!r}, not {name!r}")
    if num_classes is None and metadata.get("num_classes"):
        try:
            num_classes = int(metadata["num_classes"])
        except ValueError:
            raise ValueError(f"{path}: metadata num_classes={metadata['num_classes']!r} is not an integer") from None
    model = create_model(name, num_classes=num_classes)
    load_state_strict(model, state, path)
    return model.eval()
