"""Evaluation: confusion matrix, per-class IoU, mIoU and pixel accuracy (the metric of all four
papers), printed as a table and written as JSON.

The weights evaluated are the ones given (the final weights of a run by default); reporting the
best of several evaluations on one set is the separate, labelled ``eval.select: best`` of the
trainer. ``shorter_side`` is RegSeg's evaluation resize: the image is resized so that its shorter
side has that length, and the logits are resized back to the label's size.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..utils import atomic_path


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """``num_classes x num_classes`` int64 counts, rows = ground truth, columns = prediction;
    pixels labelled ``ignore_index`` are skipped."""
    keep = target != ignore_index
    target, pred = target[keep].long(), pred[keep].long()
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"labels outside 0..{num_classes - 1} that are not ignore ({ignore_index}): "
                         f"{sorted(set(target.unique().tolist()) - set(range(num_classes)))}")
    index = target * num_classes + pred
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes).cpu()


def metrics_from_confusion(conf: torch.Tensor, class_names: Sequence[str] | None = None) -> dict:
    """mIoU over the classes present in the ground truth or the predictions (a class absent from
    both has no IoU: NaN, reported as null and left out of the mean), pixel accuracy, per-class
    IoU and accuracy."""
    conf = conf.double()
    tp = conf.diag()
    gt = conf.sum(1)
    pred = conf.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    present = ~torch.isnan(iou)
    names = list(class_names) if class_names else [str(i) for i in range(conf.shape[0])]
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / conf.sum()) if conf.sum() > 0 else float("nan"),
        "mean_class_accuracy": float(acc[~torch.isnan(acc)].mean()) if (~torch.isnan(acc)).any() else float("nan"),
        "per_class_iou": {n: (None if torch.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "per_class_accuracy": {n: (None if torch.isnan(v) else float(v)) for n, v in zip(names, acc)},
        "pixels": int(conf.sum()),
    }


def resize_shorter_side(image: torch.Tensor, shorter: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = shorter / min(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def predict(model: nn.Module, image: torch.Tensor, out_size, shorter_side: int | None = None) -> torch.Tensor:
    """Class map N x H x W at ``out_size`` from eval-mode logits."""
    x = resize_shorter_side(image, shorter_side) if shorter_side else image
    logits = model(x)
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if tuple(logits.shape[-2:]) != tuple(out_size):
        logits = F.interpolate(logits.float(), size=tuple(out_size), mode="bilinear", align_corners=False)
    return logits.argmax(1)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 1, shorter_side: int | None = None,
             device: torch.device | str = "cpu", num_workers: int = 0, progress: bool = True,
             desc: str = "eval") -> dict:
    """Run ``model`` (switched to eval mode, restored afterwards) over ``dataset`` and return
    :func:`metrics_from_confusion` plus the confusion matrix as a list."""
    device = torch.device(device)
    num_classes, ignore = int(dataset.num_classes), int(getattr(dataset, "ignore_index", 255))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    try:
        for image, target in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
            image, target = image.to(device), target.to(device)
            pred = predict(model, image, target.shape[-2:], shorter_side)
            conf += confusion_matrix(pred, target, num_classes, ignore)
    finally:
        model.train(was_training)
    result = metrics_from_confusion(conf, getattr(dataset, "classes", None))
    result["confusion_matrix"] = conf.tolist()
    result["images"] = len(dataset)
    return result


def format_table(result: dict, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'class':<20} {'IoU':>7} {'acc':>7}")
    for name, iou in result["per_class_iou"].items():
        acc = result["per_class_accuracy"][name]
        fmt = lambda v: "    -  " if v is None else f"{100 * v:7.2f}"  # noqa: E731
        lines.append(f"{name:<20} {fmt(iou)} {fmt(acc)}")
    lines.append(f"{'mIoU':<20} {100 * result['miou']:7.2f}")
    lines.append(f"{'pixel accuracy':<20} {100 * result['pixel_accuracy']:7.2f}")
    return "\n".join(lines)


def write_json(path, result: dict) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    return Path(path)


def evaluate_weights(config: dict, weights, split: str | None = None, json_path=None,
                     progress: bool = True) -> dict:
    """``atrous eval``: build the recipe's model and ``split`` (default ``eval.split``), load
    ``weights`` (they must have the dataset's number of classes; an ``.onnx`` file, e.g. from
    ``atrous quantize``, runs in ONNX Runtime instead of the recipe's model), evaluate, print the table and
    write the JSON (default: beside the weights, ``eval_SPLIT.json``)."""
    from ..data import build_dataset
    from ..models import create_model
    from .checkpoint import load_weights
    from .distributed import pick_device

    ecfg = config["eval"]
    split = split or ecfg["split"]
    dataset = build_dataset(config["data"], split, train=False)
    if str(weights).endswith(".onnx"):  # an exported or int8 model, run by ONNX Runtime on CPU
        from ..deploy.export import OnnxModel

        model, device = OnnxModel(weights), torch.device("cpu")
        if model.num_classes not in (None, dataset.num_classes):
            raise ValueError(f"weights {weights}: {model.num_classes} classes, the dataset has {dataset.num_classes}")
    else:
        model = create_model(config["model"]["name"], num_classes=dataset.num_classes,
                             **(config["model"]["options"] or {}))
        load_weights(model, weights, allow_class_change=False)
        device = pick_device(config["device"])
    result = evaluate(model.to(device), dataset, int(ecfg["batch_size"]), ecfg["shorter_side"], device,
                      progress=progress, desc=f"eval {split}")
    result.update(weights=str(weights), split=split, shorter_side=ecfg["shorter_side"])
    print(format_table(result, f"{config['model']['name']} on {split} ({len(dataset)} images), weights {weights}"))
    json_path = Path(json_path) if json_path else Path(weights).with_name(f"eval_{split}.json")
    write_json(json_path, result)
    print(f"wrote {json_path}")
    return result
