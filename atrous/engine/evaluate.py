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

from ..errors import UserError
from ..progress import progress as progress_bar
from ..utils import atomic_path


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """``num_classes x num_classes`` int64 counts, rows = ground truth, columns = prediction;
    pixels labelled ``ignore_index`` are skipped."""
    keep = target != ignore_index
    target, pred = target[keep].long(), pred[keep].long()
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise UserError(f"labels outside 0..{num_classes - 1} that are not ignore ({ignore_index}): "
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
        for image, target in progress_bar(loader, desc=desc, disable=not progress, leave=False, unit="img"):
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
                     progress: bool = True, backend: str | None = None, threads: int | None = None) -> dict:
    """``atrous eval RECIPE --weights FILE``: the recipe's ``split`` (default ``eval.split``) and
    settings, the model as ``FILE`` says (its record; a file without one is built as the recipe's
    model), evaluated; prints the table and writes the JSON (default: beside the weights,
    ``eval_SPLIT.json``). An ``.onnx`` file (``atrous export``/``quantize``) runs in ONNX Runtime."""
    from ..weights import load

    if str(weights).lower().endswith(".onnx"):
        from ..deploy.source import open_model

        model = open_model(weights)
    else:
        model = load(weights, config["model"]["name"], **(config["model"]["options"] or {}))
    return _evaluate_model(config, model, weights, split, json_path, progress, backend, threads)


def evaluate_file(weights, overrides=(), split: str | None = None, json_path=None,
                  progress: bool = True, backend: str | None = None, threads: int | None = None) -> dict:
    """``atrous eval FILE``: the dataset, split and evaluation settings the file's weights record
    names (``overrides``, ``--set key=value``, change them, e.g. ``data.root``)."""
    from ..deploy.source import open_model

    model = open_model(weights)
    config = config_from_record(model.record, str(weights), overrides)
    return _evaluate_model(config, model, weights, split, json_path, progress, backend, threads)


def config_from_record(record, source: str, overrides=()) -> dict:
    """The evaluation configuration of a weights record: the run's resolved recipe when the record
    keeps it, else the defaults with the record's dataset, split and resize; then ``overrides``."""
    from ..errors import UserError
    from .config import DEFAULTS, apply_overrides, check_config, merge

    saved = (record.provenance or {}).get("config") if record else None
    if saved:
        config = merge(DEFAULTS, saved, source=f"{source} (record)")
    elif record is not None and record.data:
        config = merge(DEFAULTS, {"data": dict(record.data), "model": {"name": record.model},
                                  "eval": {"split": record.eval_split or "val", "shorter_side": record.eval_resize}})
    else:
        raise UserError(f"{source}: its record names no dataset (weights not trained by atrous); give the "
                        f"recipe: atrous eval RECIPE --weights {source}")
    config = apply_overrides(config, overrides)
    if config["train"]["max_iters"] is None and config["train"]["epochs"] is None:
        config["train"]["max_iters"] = 1  # a training length is irrelevant to evaluation
    check_config(config)
    return config


def _evaluate_model(config: dict, model, weights, split, json_path, progress, backend=None, threads=None) -> dict:
    from ..data import build_dataset
    from ..errors import UserError
    from .distributed import pick_device

    ecfg = config["eval"]
    split = split or ecfg["split"]
    dataset = build_dataset(config["data"], split, train=False)
    if model.num_classes not in (None, dataset.num_classes):
        raise UserError(f"{weights}: a {model.num_classes}-class model; the {dataset.name} {split} split has "
                        f"{dataset.num_classes} classes")
    onnx = str(weights).lower().endswith(".onnx")
    if backend is not None and not onnx:  # another backend (atrous.deploy.auto): CPU
        from ..deploy.auto import on_backend

        model = on_backend(model, backend, threads)
    device = torch.device("cpu") if onnx or backend else pick_device(config["device"])
    result = evaluate(model.to(device), dataset, int(ecfg["batch_size"]), ecfg["shorter_side"], device,
                      progress=progress, desc=f"eval {split}")
    result.update(weights=str(weights), split=split, shorter_side=ecfg["shorter_side"])
    if hasattr(model, "describe"):
        result["backend"] = model.describe()
        print(f"backend: {result['backend']}")
    name = model.record.model if getattr(model, "record", None) else config["model"]["name"]
    print(format_table(result, f"{name} on {dataset.name} {split} ({len(dataset)} images), weights {weights}"))
    json_path = Path(json_path) if json_path else Path(weights).with_name(f"eval_{split}.json")
    write_json(json_path, result)
    print(f"wrote {json_path}")
    return result
