"""Model families, each registering its named variants on import."""
from . import regseg  # noqa: F401  (registers regseg, regseg_large)
from . import regseg_search  # noqa: F401  (registers regseg_search)
from .base import FovStep, ModelCard, SegmentationModel, split_outputs
from .registry import create_model, get_entry, list_models, register_model

__all__ = ["FovStep", "ModelCard", "SegmentationModel", "create_model", "get_entry", "list_models",
           "register_model", "split_outputs"]
