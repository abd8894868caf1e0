"""Pictures of a run: loss and mIoU curves (DIR/curves.png) and a prediction on a validation
sample, image | ground truth | prediction overlay (DIR/prediction.png)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..utils import atomic_path
from .evaluate import predict


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(metrics_path, out_path, metric: str = "miou", label: str = "mIoU") -> Path:
    """Training loss against iterations, and the validation ``metric`` (``val_<metric>`` in
    metrics.jsonl: mIoU, or top-1 accuracy for pretraining) where evaluated."""
    records = [json.loads(ln) for ln in Path(metrics_path).read_text().splitlines() if ln.strip()]
    train = [r for r in records if "loss" in r]
    key = f"val_{metric}"
    evals = [r for r in records if key in r]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    ax.plot([r["iter"] for r in train], [r["loss"] for r in train], color="tab:blue")
    ax.set(xlabel="iteration", ylabel="training loss", title="loss")
    ax.grid(alpha=0.3)
    ax = axes[1]
    if evals:
        ax.plot([r["iter"] for r in evals], [100 * r[key] for r in evals], "o-", color="tab:green")
        final = [r for r in evals if r.get("final")]
        if final:
            ax.annotate(f"{100 * final[-1][key]:.1f}", (final[-1]["iter"], 100 * final[-1][key]),
                        textcoords="offset points", xytext=(-10, 6))
    ax.set(xlabel="iteration", ylabel=f"{label} (%)", title=f"{evals[-1]['split'] if evals else 'val'} {label}")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(out_path)


def colorize(mask: np.ndarray, palette, ignore_index: int = 255) -> np.ndarray:
    """Class map -> RGB with the dataset's palette; ignored pixels black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    out = table[np.clip(mask, 0, 255).astype(np.int64)]
    out[mask == ignore_index] = 0
    return out


@torch.no_grad()
def plot_prediction(model, dataset, out_path, device="cpu", shorter_side=None, index: int = 0) -> Path:
    """Image | ground truth | prediction over the image, for ``dataset`` sample ``index``."""
    image, mask = dataset.load(index)
    x, _ = dataset[index]
    was_training = model.training
    model.eval()
    pred = predict(model, x.unsqueeze(0).to(device), (image.height, image.width), shorter_side)[0].cpu().numpy()
    model.train(was_training)
    rgb = np.asarray(image.convert("RGB"))
    palette = dataset.palette
    overlay = (0.45 * rgb + 0.55 * colorize(pred, palette)).astype(np.uint8)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4 * rgb.shape[0] / rgb.shape[1] + 0.6))
    for ax, picture, title in zip(axes, (rgb, colorize(mask, palette), overlay),
                                  ("image", "ground truth", "prediction")):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.03)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(out_path)
