"""atrous: real-time semantic segmentation with dilated (atrous) convolutions.

Public API::

    atrous.list_models()                      # sorted registered names
    atrous.create_model("regseg", num_classes=19, **config_overrides)
    atrous.load("runs/toy/model.safetensors") # the model as trained, with model.record
    atrous.from_official("regseg", "best_model.pth")  # the authors' checkpoint
    atrous.field_of_view(model)               # RegSeg Sec 3.1
    atrous.complexity(model, input_size=(1024, 2048))

The names are imported on first use, so ``import atrous`` (and ``atrous --help``) does not
load PyTorch.
"""
from importlib import import_module

__version__ = "0.2.0"

_LAZY = {
    "complexity": "analysis", "field_of_view": "analysis",
    "create_model": "models", "list_models": "models", "split_outputs": "models",
    "load": "weights", "from_official": "weights",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atrous' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
