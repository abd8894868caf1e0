"""RegSeg's reduced RandAugment (RegSeg Sec 4.2; Cubuk et al. 2020), joint on image and mask.

RegSeg applies ``num_ops = 2`` operations drawn without replacement from auto contrast, equalize,
rotate, color, contrast, brightness and sharpness, at magnitude 0.2 on a 0..1 scale. As in the
official code (augment.py, the "reduced" set with the ``*_inc`` enhancers) a magnitude ``m`` means:
rotate by ``+-30 m`` degrees; enhance color/contrast/brightness/sharpness by a factor ``1 +- 0.9 m``
(sign drawn with probability 1/2); auto contrast and equalize take no magnitude. Rotation is the only
geometric op: the mask is rotated with it (nearest neighbour), uncovered pixels become ignore in the
mask and the fill colour (the normalisation mean) in the image.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ..errors import UserError
from .classes import IGNORE_INDEX

REDUCED_OPS = ("auto_contrast", "equalize", "rotate", "color", "contrast", "brightness", "sharpness")
MAX_ROTATE_DEGREES = 30.0
MAX_ENHANCE = 0.9
_ENHANCERS = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
              "brightness": ImageEnhance.Brightness, "sharpness": ImageEnhance.Sharpness}


def rotate_pair(image: Image.Image, mask: np.ndarray, degrees: float, fill=(123, 116, 103),
                ignore_index: int = IGNORE_INDEX):
    """Rotate image (bilinear, ``fill`` outside) and mask (nearest, ignore outside) about the centre."""
    image = image.rotate(degrees, resample=Image.BILINEAR, fillcolor=tuple(int(v) for v in fill))
    if mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError("rotate_pair: mask values must fit in 0..255")
    rotated = Image.fromarray(mask.astype(np.uint8)).rotate(degrees, resample=Image.NEAREST,
                                                             fillcolor=ignore_index)
    return image, np.asarray(rotated).astype(np.int64)


def apply_op(op: str, image, mask, magnitude: float, rng: np.random.Generator, fill, ignore_index):
    """One RandAugment op at ``magnitude`` in [0, 1]."""
    sign = -1.0 if rng.random() < 0.5 else 1.0
    if op == "auto_contrast":
        return ImageOps.autocontrast(image), mask
    if op == "equalize":
        return ImageOps.equalize(image), mask
    if op == "rotate":
        return rotate_pair(image, mask, sign * magnitude * MAX_ROTATE_DEGREES, fill, ignore_index)
    if op in _ENHANCERS:
        return _ENHANCERS[op](image).enhance(1.0 + sign * magnitude * MAX_ENHANCE), mask
    raise UserError(f"randaug op {op!r}: expected one of {list(REDUCED_OPS)}")


class RandAugment:
    """``num_ops`` ops drawn without replacement from ``ops``, each at ``magnitude`` (0..1)."""

    def __init__(self, num_ops: int = 2, magnitude: float = 0.2, ops=REDUCED_OPS,
                 fill=(123, 116, 103), ignore_index: int = IGNORE_INDEX):
        ops = tuple(ops)
        unknown = [op for op in ops if op not in REDUCED_OPS]
        if unknown:
            raise UserError(f"randaug ops {unknown}: expected a subset of {list(REDUCED_OPS)}")
        if not 0 <= int(num_ops) <= len(ops):
            raise UserError(f"randaug num_ops={num_ops}: expected 0..{len(ops)}")
        if not 0.0 <= float(magnitude) <= 1.0:
            raise UserError(f"randaug magnitude={magnitude}: expected a value in [0, 1]")
        self.num_ops, self.magnitude, self.ops = int(num_ops), float(magnitude), ops
        self.fill, self.ignore_index = tuple(int(v) for v in fill), ignore_index

    def __call__(self, image, mask, rng: np.random.Generator):
        chosen = rng.choice(len(self.ops), size=self.num_ops, replace=False)
        for k in chosen:
            image, mask = apply_op(self.ops[int(k)], image, mask, self.magnitude, rng, self.fill,
                                   self.ignore_index)
        return image, mask

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, ops={list(self.ops)})"
