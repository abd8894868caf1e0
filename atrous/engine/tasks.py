"""What the trainer trains: semantic segmentation (every recipe of the four papers) or
classification (the papers' ImageNet encoder pretraining, DSNet Sec 3.2). A task builds the
datasets, the model and the loss, evaluates, and describes the weights it writes; the trainer
(state, step, hooks, checkpoints, resume, DDP, AMP, EMA, progress) is the same for both."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .evaluate import evaluate, format_table
from .records import training_record
from .settings import RunSettings


def build_task(settings: RunSettings):
    return ClassificationTask() if settings.task == "classification" else SegmentationTask()


class SegmentationTask:
    metric, label = "miou", "mIoU"

    def datasets(self, config: dict):
        from ..data import build_dataset

        return (build_dataset(config["data"], config["train"]["split"], train=True),
                build_dataset(config["data"], config["eval"]["split"], train=False))

    def model(self, settings: RunSettings, train_set) -> nn.Module:
        from ..models import create_model

        return create_model(settings.model.name, num_classes=train_set.num_classes, **settings.model.options)

    def criterion(self, settings: RunSettings, train_set):
        from .losses import loss_from_config

        weights = class_weights(settings.loss.class_weights, train_set)
        return loss_from_config(settings.loss, int(getattr(train_set, "ignore_index", 255)), weights)

    def evaluate(self, model, dataset, settings: RunSettings, device, progress: bool, desc: str) -> dict:
        ecfg = settings.eval
        return evaluate(model, dataset, ecfg.batch_size, ecfg.shorter_side, device, progress=progress, desc=desc)

    def scores(self, result: dict) -> dict:
        return {"miou": result["miou"], "pixel_accuracy": result["pixel_accuracy"]}

    def table(self, result: dict, title: str) -> str:
        return format_table(result, title)

    def record(self, config, model, train_set, iteration, weights, metrics):
        return training_record(config, model, train_set, iteration, weights, metrics)

    def pictures(self, out: Path, model, val_set, device, settings: RunSettings) -> None:
        from .plots import plot_curves, plot_prediction

        plot_curves(out / "metrics.jsonl", out / "curves.png")
        if val_set is not None:
            plot_prediction(model, val_set, out / "prediction.png", device, settings.eval.shorter_side)


def class_weights(spec, train_set) -> torch.Tensor | None:
    """``loss.class_weights`` as a tensor: a list (one per class), or ``enet`` from the training
    set's pixel counts (its class statistics, computed once and cached like class-uniform
    sampling's)."""
    from ..errors import UserError
    from .losses import enet_weights

    if spec is None:
        return None
    if spec == "enet":
        counts = torch.as_tensor(train_set.class_presence(progress=False).counts.sum(0))
        return enet_weights(counts)
    if isinstance(spec, list) and len(spec) == train_set.num_classes and all(isinstance(v, (int, float)) for v in spec):
        return torch.tensor(spec, dtype=torch.float32)
    raise UserError(f"loss.class_weights: expected null, enet or {train_set.num_classes} numbers, got {spec!r}")


class ClassificationTask:
    """Encoder pretraining: ``model.name``'s encoder + GAP + linear
    (:class:`atrous.models.classifier.EncoderClassifier`) on an ``imagefolder`` dataset; top-1 and
    top-5 accuracy; the weights initialise the segmentation model's encoder."""

    metric, label = "top1", "top-1 accuracy"

    def datasets(self, config: dict):
        from ..data import build_dataset
        from ..errors import UserError

        if config["data"].get("dataset") != "imagefolder":
            raise UserError(f"data.dataset: task classification needs 'imagefolder', got "
                            f"{config['data'].get('dataset')!r}")
        return (build_dataset(config["data"], config["train"]["split"], train=True),
                build_dataset(config["data"], config["eval"]["split"], train=False))

    def model(self, settings: RunSettings, train_set) -> nn.Module:
        from ..models.classifier import EncoderClassifier

        return EncoderClassifier(settings.model.name, train_set.num_classes, **settings.model.options)

    def criterion(self, settings: RunSettings, train_set):
        smoothing = settings.loss.label_smoothing
        return lambda logits, labels: F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)

    @torch.no_grad()
    def evaluate(self, model, dataset, settings: RunSettings, device, progress: bool, desc: str) -> dict:
        return classification_accuracy(model, dataset, settings.eval.batch_size, device, progress, desc)

    def scores(self, result: dict) -> dict:
        return {"top1": result["top1"], "top5": result["top5"]}

    def table(self, result: dict, title: str) -> str:
        return (f"{title}\n{'top-1 accuracy':<20} {100 * result['top1']:7.2f}\n"
                f"{'top-5 accuracy':<20} {100 * result['top5']:7.2f}\n{'images':<20} {result['images']:7d}")

    def record(self, config, model, train_set, iteration, weights, metrics):
        record = training_record(config, model, train_set, iteration, weights, metrics)
        val = (config["data"].get("transforms") or {}).get("val") or {}
        return record.replace(task="classification", palette=(), eval_resize=val.get("resize", 256))

    def pictures(self, out: Path, model, val_set, device, settings: RunSettings) -> None:
        from .plots import plot_curves

        plot_curves(out / "metrics.jsonl", out / "curves.png", self.metric, self.label)


def classification_accuracy(model, dataset, batch_size: int = 1, device="cpu", progress: bool = True,
                            desc: str = "eval") -> dict:
    """Top-1 and top-5 accuracy of ``model`` (eval mode, restored afterwards) over ``dataset``."""
    from ..progress import progress as progress_bar

    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False)
    was_training = model.training
    model.eval()
    hits1 = hits5 = total = 0
    try:
        for images, labels in progress_bar(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
            logits = model(images.to(device)).float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
            hits1 += int((top[:, 0] == labels).sum())
            hits5 += int((top == labels[:, None]).any(dim=1).sum())
            total += len(labels)
    finally:
        model.train(was_training)
    return {"top1": hits1 / total, "top5": hits5 / total, "images": total}
