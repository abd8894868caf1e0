"""Model families, each registering its named variants on import."""
from . import regseg  # noqa: F401  (registers regseg, regseg_large)
from . import dwrseg  # noqa: F401  (registers dwrseg_base, dwrseg_large)
from . import fassdnet  # noqa: F401  (registers fassdnet, fassdnet_l1, fassdnet_l2)
from . import dsnet  # noqa: F401  (registers dsnet, dsnet_head64/128/256, dsnet_base)
from . import regseg_search  # noqa: F401  (registers regseg_search)
from .base import FovStep, ModelCard, SegmentationModel, split_outputs
from .registry import create_model, get_entry, list_models, register_alias, register_model

__all__ = ["FovStep", "ModelCard", "SegmentationModel", "create_model", "get_entry", "list_models",
           "register_alias", "register_model", "split_outputs"]
