"""Pictures of what a dataset feeds a network: each sample after its transform, beside its mask in
the dataset's palette (ignore in white), so a recipe's augmentations can be checked by eye."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..utils import atomic_path
from .classes import colorize


def denormalize(image: torch.Tensor, mean, std) -> np.ndarray:
    """3xHxW normalised tensor -> HxWx3 uint8."""
    mean = torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
    std = torch.as_tensor(std, dtype=torch.float32)[:, None, None]
    rgb = ((image.float() * std + mean) * 255).round().clamp(0, 255).byte()
    return rgb.permute(1, 2, 0).numpy()


def preview_grid(dataset, items, columns: int = 2, gap: int = 4) -> Image.Image:
    """A grid of (image, mask) pairs for ``items`` (indices or SampleRequests), ``columns`` pairs a row."""
    transform = dataset.transform
    mean = getattr(transform, "mean", (0.485, 0.456, 0.406))
    std = getattr(transform, "std", (0.229, 0.224, 0.225))
    tiles = []
    for item in items:
        image, mask = dataset[item]
        rgb = denormalize(image, mean, std)
        drawn = colorize(mask.numpy(), dataset.palette, ignore_colour=(255, 255, 255))
        if drawn.shape[:2] != rgb.shape[:2]:  # evaluation keeps the label's own size
            drawn = np.asarray(Image.fromarray(drawn).resize(rgb.shape[1::-1], Image.NEAREST))
        tiles.append(np.concatenate([rgb, np.zeros((rgb.shape[0], gap, 3), np.uint8), drawn], axis=1))
    if not tiles:
        raise ValueError("preview_grid: no items to draw")
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // columns)
    canvas = np.full((rows * (th + gap) - gap, columns * (tw + gap) - gap, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        y, x = (k // columns) * (th + gap), (k % columns) * (tw + gap)
        canvas[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    return Image.fromarray(canvas)


def save_preview(dataset, items, path, columns: int = 2) -> None:
    """Write :func:`preview_grid` to ``path`` (PNG), atomically."""
    grid = preview_grid(dataset, items, columns)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
