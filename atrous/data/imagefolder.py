"""Image classification data for encoder pretraining, in ImageNet's folder layout.

Layout: ``root/train/CLASS/*.jpg`` and ``root/val/CLASS/*.jpg`` (one folder per class; any of
the image extensions atrous reads). The classes are the sorted folder names of ``root/train``
(so ``val`` uses the same indices, and a class folder missing from ``val`` is fine). A bad
image is an error naming its path, or, with ``skip_bad``, left out and counted in one warning.

Transforms (the usual ImageNet ones, all randomness from the per-sample ``rng``): training takes a
random crop of ``scale`` of the area and an aspect ratio in [3/4, 4/3], resized to ``crop``, then a
horizontal flip with probability ``hflip``; evaluation resizes the shorter side to ``resize`` and
takes the centre ``crop``.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import UserError
from .base import IMAGE_EXTENSIONS, DataError, SampleRequest, read_image
from .transforms import IMAGENET_MEAN, IMAGENET_STD

TRAIN_DEFAULTS = {"crop": 224, "scale": [0.08, 1.0], "hflip": 0.5}
VAL_DEFAULTS = {"resize": 256, "crop": 224}


class ClassificationTransform:
    """PIL RGB image -> normalised 3 x crop x crop float32 tensor; see the module docstring."""

    def __init__(self, train: bool, crop: int = 224, scale=(0.08, 1.0), hflip: float = 0.5, resize: int = 256,
                 normalize: dict | None = None):
        self.train, self.crop, self.hflip, self.resize = train, int(crop), float(hflip), int(resize)
        self.scale = (float(scale[0]), float(scale[1]))
        norm = normalize or {}
        self.mean = np.asarray(norm.get("mean", IMAGENET_MEAN), dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(norm.get("std", IMAGENET_STD), dtype=np.float32).reshape(3, 1, 1)
        if self.crop < 8 or not 0 < self.scale[0] <= self.scale[1] <= 1 or not 0 <= self.hflip <= 1:
            raise UserError(f"classification transform: crop >= 8, 0 < scale[0] <= scale[1] <= 1 and hflip in "
                            f"[0, 1] expected, got crop {crop}, scale {scale}, hflip {hflip}")

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        image = self._random_crop(image, rng) if self.train else self._centre_crop(image)
        if self.train and rng.random() < self.hflip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        x = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy(np.ascontiguousarray((x - self.mean) / self.std))

    def _random_crop(self, image: Image.Image, rng) -> Image.Image:
        w, h = image.size
        for _ in range(10):
            area = w * h * rng.uniform(*self.scale)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                return image.resize((self.crop, self.crop), Image.BILINEAR, box=(x, y, x + cw, y + ch))
        return self._centre_crop(image)  # as torchvision: fall back to the centre

    def _centre_crop(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        scale = self.resize / min(w, h)
        image = image.resize((max(self.crop, round(w * scale)), max(self.crop, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        x, y = (w - self.crop) // 2, (h - self.crop) // 2
        return image.crop((x, y, x + self.crop, y + self.crop))


def build_classification_transform(cfg: dict | None, train: bool) -> ClassificationTransform:
    """A recipe's ``data.transforms.train``/``val`` mapping -> :class:`ClassificationTransform`."""
    defaults = TRAIN_DEFAULTS if train else VAL_DEFAULTS
    cfg = dict(cfg or {})
    allowed = (*defaults, "normalize")
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise UserError(f"transform key {unknown[0]!r} is unknown for classification "
                        f"{'training' if train else 'evaluation'}; expected one of {', '.join(allowed)}")
    return ClassificationTransform(train, **{**defaults, **cfg})


class ImageFolder(Dataset):
    """``root/SPLIT/CLASS/*`` images with their class index; ``dataset[i]`` is ``(image, label)``."""

    def __init__(self, root, split: str = "train", transform=None, skip_bad: bool = False):
        root = Path(root)
        class_root = root / "train"
        if not class_root.is_dir():
            raise DataError(f"{class_root}: folder is missing; expected root/train/CLASS/*.jpg (ImageNet layout)")
        self.classes = tuple(sorted(p.name for p in class_root.iterdir() if p.is_dir()))
        if not self.classes:
            raise DataError(f"{class_root}: no class folders")
        self.num_classes, self.name, self.split = len(self.classes), "imagefolder", split
        self.transform = transform or ClassificationTransform(train=False)
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{folder}: folder is missing; expected root/{split}/CLASS/*.jpg")
        self.files = [(os.fspath(path), label) for label, name in enumerate(self.classes)
                      for path in sorted((folder / name).glob("*")) if path.suffix.lower() in IMAGE_EXTENSIONS]
        self.skipped = []
        if skip_bad:
            self._drop_bad()
        if not self.files:
            raise DataError(f"{folder}: split {split!r} holds no images")

    def _drop_bad(self) -> None:
        good = []
        for path, label in self.files:
            try:
                read_image(path)
                good.append((path, label))
            except DataError as exc:
                self.skipped.append((path, str(exc)))
        if self.skipped:
            warnings.warn(f"imagefolder {self.split}: skipped {len(self.skipped)} bad image(s); first: "
                          f"{self.skipped[0][1]}", stacklevel=3)
        self.files = good

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item):
        request = item if isinstance(item, SampleRequest) else SampleRequest(int(item))
        path, label = self.files[request.index]
        seed = request.seed if request.seed is not None else int(torch.randint(0, 2 ** 62, (1,)).item())
        return self.transform(read_image(path), np.random.default_rng(seed)), label
