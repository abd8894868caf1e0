"""atrous: real-time semantic segmentation with dilated (atrous) convolutions.

Public API::

    atrous.list_models()                      # sorted registered names
    atrous.create_model("regseg", num_classes=19, **config_overrides)
    atrous.from_official("regseg", "best_model.pth")  # the authors' checkpoint
    atrous.field_of_view(model)               # RegSeg Sec 3.1
    atrous.complexity(model, input_size=(1024, 2048))
"""
from .analysis import complexity, field_of_view
from .models import create_model, list_models, split_outputs
from .official import from_official

__version__ = "0.1.0"
__all__ = ["complexity", "create_model", "field_of_view", "from_official", "list_models", "split_outputs"]
