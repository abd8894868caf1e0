"""Training and evaluation: recipes, losses, schedule, EMA, checkpoints, the trainer, DDP and
evaluation (RegSeg Sec 4.1-4.3, DSNet Sec 4.2, DWRSeg Sec 4.1, FASSD-Net Sec IV-A)."""
from .config import DEFAULTS, apply_overrides, list_recipes, load_config
from .ema import EMA
from .evaluate import confusion_matrix, evaluate, evaluate_file, evaluate_weights, metrics_from_confusion
from .losses import Bootstrap, CrossEntropy, DSNetOHEM, RegSegOHEM, SegLoss, build_criterion
from .optim import build_optimizer, param_groups
from .schedule import lr_factor
from .trainer import TrainingDiverged, train

__all__ = [
    "DEFAULTS", "EMA", "Bootstrap", "CrossEntropy", "DSNetOHEM", "RegSegOHEM", "SegLoss", "TrainingDiverged",
    "apply_overrides", "build_criterion", "build_optimizer", "confusion_matrix", "evaluate", "evaluate_file", "evaluate_weights",
    "list_recipes", "load_config", "lr_factor", "metrics_from_confusion", "param_groups", "train",
]
