"""Joint image/mask transforms (RegSeg Sec 4.2, DSNet Sec 4.1, DWRSeg Sec 4.1, FASSD-Net Sec IV-A).

``build_transforms(cfg, train)`` turns a recipe's ``transforms.train`` / ``transforms.val`` mapping
into a :class:`SegTransform`: ``transform(image, mask, rng=None, center=None) -> (image, mask)``
with ``image`` a PIL RGB picture and ``mask`` an int64 array of train ids, returning a float32
3xHxW normalised tensor and an int64 HxW tensor (255 = ignore).

Keys (applied in this order, each optional):

``scale``         ``{shorter_side: [lo, hi]}`` (RegSeg: [400, 1600]; aspect kept; integer drawn
                  uniformly) or ``{factor: [lo, hi]}`` (DSNet [0.4, 1.6], DWRSeg [0.25, 1.5]); add
                  ``sampling: log_uniform`` to draw in log space. A bare ``[lo, hi]`` means a
                  shorter side when both are >= 16 and a factor otherwise.
``crop``          ``[h, w]``: random crop; a side shorter than the crop is padded at a random
                  place with the mean colour and ignore (as the official RegSeg code). With a
                  class-uniform ``center`` the crop contains it.
``hflip``         probability of a horizontal flip.
``randaug``       ``{num_ops: 2, magnitude: 0.2, ops: [...]}``, RegSeg's reduced RandAugment.
``color_jitter``  ``{brightness, contrast, saturation, hue, prob}`` (DWRSeg's colour jittering),
                  each factor drawn in ``[1 - v, 1 + v]`` (or a given ``[lo, hi]``), hue in ``[-v, v]``.
``resize``        shorter side in pixels (RegSeg's evaluation option) or ``[h, w]``; the image only,
                  unless ``resize_mask: true``: evaluation scores at the label's own resolution.
``normalize``     ``{mean: [...], std: [...]}``, on 0..1 values (default ImageNet).

All randomness comes from ``rng`` (a numpy Generator). Samplers pass a per-sample seed, which makes
a sample's augmentation independent of worker count, order and resumption; without one a seed is
drawn from torch's generator (seeded per DataLoader worker).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageEnhance

from ..errors import UserError
from ..weights.record import IMAGENET_MEAN, IMAGENET_STD
from .base import to_tensors
from .classes import IGNORE_INDEX
from .randaug import RandAugment

TRAIN_KEYS = ("scale", "crop", "hflip", "randaug", "color_jitter", "resize", "resize_mask", "normalize")
EVAL_KEYS = ("resize", "resize_mask", "normalize")


def nearest_indices(out_len: int, in_len: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Source index of output pixels ``start..stop-1`` when resizing ``in_len`` -> ``out_len`` by
    nearest neighbour (pixel centres)."""
    out = np.arange(start, out_len if stop is None else stop)
    return np.minimum(((out + 0.5) * in_len / out_len).astype(np.intp), in_len - 1)


def resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an integer mask (pixel centres), exact for any ids."""
    h, w = mask.shape
    return mask[nearest_indices(height, h)[:, None], nearest_indices(width, w)[None, :]]


def _pair(value, key):
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        lo, hi = float(value[0]), float(value[1])
        if lo <= hi:
            return lo, hi
    raise UserError(f"transform key {key!r}: expected [lo, hi] with lo <= hi, got {value!r}")


class RandomScale:
    """Random rescale by shorter side (RegSeg) or by factor (DSNet, DWRSeg); mask nearest."""

    def __init__(self, shorter_side=None, factor=None, sampling: str = "uniform"):
        if (shorter_side is None) == (factor is None):
            raise UserError("transform key 'scale': give exactly one of shorter_side or factor")
        if sampling not in ("uniform", "log_uniform"):
            raise UserError(f"transform key 'scale.sampling': {sampling!r}, expected uniform or log_uniform")
        self.mode = "shorter_side" if shorter_side is not None else "factor"
        self.lo, self.hi = _pair(shorter_side if shorter_side is not None else factor, "scale")
        if self.lo <= 0:
            raise UserError(f"transform key 'scale': range must be positive, got {[self.lo, self.hi]}")
        self.sampling = sampling

    def plan(self, width: int, height: int, rng, center):
        """Draw the new size ``(nw, nh)`` and move ``center`` with it."""
        if self.sampling == "log_uniform":
            value = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        elif self.mode == "shorter_side":
            value = float(rng.integers(int(self.lo), int(self.hi) + 1))
        else:
            value = rng.uniform(self.lo, self.hi)
        scale = value / min(width, height) if self.mode == "shorter_side" else value
        nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
        if center is not None:
            center = (min(nh - 1, int(center[0] * nh / height)), min(nw - 1, int(center[1] * nw / width)))
        return nw, nh, center

    def __call__(self, image, mask, rng, center):
        nw, nh, center = self.plan(*image.size, rng, center)
        return image.resize((nw, nh), Image.BILINEAR), resize_mask_nearest(mask, nh, nw), center


def window_start(length: int, size: int, rng, c=None) -> int:
    """Start of a random window of ``size`` along an axis of ``length``. A longer axis gives a window
    inside it; a shorter one a window around it, i.e. padding at a random place (as the official
    RegSeg code pads). With ``c`` the window contains position ``c``."""
    lo, hi = min(0, length - size), max(0, length - size)
    if c is not None:
        lo, hi = max(lo, c - size + 1), min(hi, c)
    return int(rng.integers(lo, hi + 1))


def paste_window(image, mask, y0, x0, height, width, fill, ignore_index):
    """The ``height x width`` window at ``(y0, x0)`` of (image, mask); outside them: fill / ignore."""
    w, h = image.size
    if 0 <= y0 and 0 <= x0 and y0 + height <= h and x0 + width <= w:
        return image.crop((x0, y0, x0 + width, y0 + height)), mask[y0:y0 + height, x0:x0 + width]
    canvas = Image.new("RGB", (width, height), fill)
    out = np.full((height, width), ignore_index, dtype=mask.dtype)
    ya, yb, xa, xb = max(y0, 0), min(y0 + height, h), max(x0, 0), min(x0 + width, w)
    canvas.paste(image.crop((xa, ya, xb, yb)), (xa - x0, ya - y0))
    out[ya - y0:yb - y0, xa - x0:xb - x0] = mask[ya:yb, xa:xb]
    return canvas, out


class RandomCrop:
    """Random ``[h, w]`` crop; along a side shorter than the crop the image is padded (mean colour,
    ignore) at a random place, as the official code does. With a class-uniform ``center`` the
    window is drawn among those that contain it."""

    def __init__(self, size, fill, ignore_index=IGNORE_INDEX):
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(int(s) > 0 for s in size)):
            raise UserError(f"transform key 'crop': expected [h, w], got {size!r}")
        self.height, self.width = int(size[0]), int(size[1])
        self.fill, self.ignore_index = tuple(int(v) for v in fill), ignore_index

    def place(self, height: int, width: int, rng, center):
        """The window's top-left corner (may be negative: padding)."""
        y0 = window_start(height, self.height, rng, None if center is None else center[0])
        x0 = window_start(width, self.width, rng, None if center is None else center[1])
        return y0, x0

    def __call__(self, image, mask, rng, center):
        y0, x0 = self.place(image.height, image.width, rng, center)
        image, mask = paste_window(image, mask, y0, x0, self.height, self.width, self.fill, self.ignore_index)
        return image, mask, None if center is None else (center[0] - y0, center[1] - x0)


class ScaleThenCrop:
    """``scale`` followed by ``crop``, computed on the crop window only: the image is resampled only
    where the crop lands (PIL resize with a source box) and the mask indexed only there. The random
    draws and the mask are those of the two steps in turn; the image differs by PIL's rounding
    (at most 2 grey levels). At RegSeg's Cityscapes setting it resamples the 1024x1024 window
    instead of frames of up to 3200x1600."""

    def __init__(self, scale: RandomScale, crop: RandomCrop):
        self.scale, self.crop = scale, crop

    def __call__(self, image, mask, rng, center):
        w, h = image.size
        nw, nh, center = self.scale.plan(w, h, rng, center)
        crop = self.crop
        y0, x0 = crop.place(nh, nw, rng, center)
        ya, yb = max(y0, 0), min(y0 + crop.height, nh)  # the window's part inside the scaled image
        xa, xb = max(x0, 0), min(x0 + crop.width, nw)
        part = image.resize((xb - xa, yb - ya), Image.BILINEAR, box=(xa * w / nw, ya * h / nh, xb * w / nw, yb * h / nh))
        part_mask = mask[nearest_indices(nh, h, ya, yb)[:, None], nearest_indices(nw, w, xa, xb)[None, :]]
        if (yb - ya, xb - xa) != (crop.height, crop.width):
            canvas = Image.new("RGB", (crop.width, crop.height), crop.fill)
            canvas.paste(part, (xa - x0, ya - y0))
            out = np.full((crop.height, crop.width), crop.ignore_index, dtype=mask.dtype)
            out[ya - y0:yb - y0, xa - x0:xb - x0] = part_mask
            part, part_mask = canvas, out
        return part, part_mask, None if center is None else (center[0] - y0, center[1] - x0)


class HorizontalFlip:
    def __init__(self, prob: float):
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= float(prob) <= 1.0:
            raise UserError(f"transform key 'hflip': expected a probability in [0, 1], got {prob!r}")
        self.prob = float(prob)

    def __call__(self, image, mask, rng, center):
        if rng.random() < self.prob:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            mask = mask[:, ::-1]
            if center is not None:
                center = (center[0], mask.shape[1] - 1 - center[1])
        return image, mask, center


class ColorJitter:
    """Brightness, contrast, saturation (PIL enhancers) and hue (HSV shift), in a random order."""

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, prob=1.0):
        self.ranges = {}
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            lo, hi = _pair(value, f"color_jitter.{name}")
            if lo < 0:
                raise UserError(f"transform key 'color_jitter.{name}': expected values >= 0, got {value!r}")
            if isinstance(value, (int, float)):
                lo, hi = max(0.0, 1.0 - value), 1.0 + value
            if (lo, hi) != (1.0, 1.0):
                self.ranges[name] = (lo, hi)
        if not 0.0 <= float(hue) <= 0.5:
            raise UserError(f"transform key 'color_jitter.hue': expected 0..0.5, got {hue!r}")
        if hue:
            self.ranges["hue"] = (-float(hue), float(hue))
        self.prob = float(prob)

    def __call__(self, image, mask, rng, center):
        if not self.ranges or rng.random() >= self.prob:
            return image, mask, center
        names = list(self.ranges)
        for k in rng.permutation(len(names)):
            name = names[int(k)]
            value = rng.uniform(*self.ranges[name])
            if name == "hue":
                hsv = np.array(image.convert("HSV"))
                hsv[..., 0] = (hsv[..., 0].astype(np.int64) + int(round(value * 255))) % 256
                image = Image.fromarray(hsv, "HSV").convert("RGB")
            else:
                enhancer = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
                            "saturation": ImageEnhance.Color}[name]
                image = enhancer(image).enhance(value)
        return image, mask, center


class Resize:
    """Deterministic resize to a shorter side (RegSeg's evaluation option) or to ``[h, w]``."""

    def __init__(self, size, resize_mask: bool = False):
        self.size, self.resize_mask = size, bool(resize_mask)
        if not (isinstance(size, int) and size > 0) and not (
                isinstance(size, (list, tuple)) and len(size) == 2 and all(int(s) > 0 for s in size)):
            raise UserError(f"transform key 'resize': expected a shorter side or [h, w], got {size!r}")

    def __call__(self, image, mask, rng, center):
        w, h = image.size
        if isinstance(self.size, int):
            scale = self.size / min(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        else:
            nh, nw = int(self.size[0]), int(self.size[1])
        image = image.resize((nw, nh), Image.BILINEAR)
        if self.resize_mask:
            mask = resize_mask_nearest(mask, nh, nw)
        return image, mask, None


class _RandAugStep:
    def __init__(self, randaug: RandAugment):
        self.randaug = randaug

    def __call__(self, image, mask, rng, center):
        image, mask = self.randaug(image, mask, rng)
        return image, mask, center

    def __repr__(self) -> str:
        return repr(self.randaug)


class SegTransform:
    """The ordered steps plus normalisation; see the module docstring."""

    def __init__(self, steps, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.steps, self.mean, self.std = list(steps), tuple(mean), tuple(std)

    def __call__(self, image, mask, rng=None, center=None):
        if rng is None:
            rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))
        for step in self.steps:
            image, mask, center = step(image, mask, rng, center)
        return to_tensors(image, mask, self.mean, self.std)

    def __repr__(self) -> str:
        inner = "".join(f"\n    {type(s).__name__}: {vars(s) if not isinstance(s, _RandAugStep) else s}"
                        for s in self.steps)
        return f"SegTransform({inner}\n    normalize: mean={self.mean}, std={self.std})"


def _scale_from(value):
    if isinstance(value, dict):
        unknown = set(value) - {"shorter_side", "factor", "sampling"}
        if unknown:
            raise UserError(f"transform key 'scale.{sorted(unknown)[0]}' is unknown; expected "
                             f"shorter_side, factor, sampling")
        return RandomScale(**value)
    lo, hi = _pair(value, "scale")
    return RandomScale(shorter_side=[lo, hi]) if lo >= 16 else RandomScale(factor=[lo, hi])


def _kwargs(value, key, allowed):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"transform key {key!r}: expected a mapping, got {value!r}")
    unknown = set(value) - set(allowed)
    if unknown:
        raise UserError(f"transform key '{key}.{sorted(unknown)[0]}' is unknown; expected {', '.join(allowed)}")
    return dict(value)


def build_transforms(cfg: dict | None, train: bool) -> SegTransform:
    """A recipe's ``transforms.train`` (train=True) or ``transforms.val`` mapping -> SegTransform."""
    cfg = dict(cfg or {})
    allowed = TRAIN_KEYS if train else EVAL_KEYS
    for key in cfg:
        if key not in allowed:
            where = "training" if train else "evaluation"
            raise UserError(f"transform key {key!r} is unknown for {where}; expected one of {', '.join(allowed)}")
    norm = _kwargs(cfg.get("normalize"), "normalize", ("mean", "std"))
    mean, std = tuple(norm.get("mean", IMAGENET_MEAN)), tuple(norm.get("std", IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise UserError(f"transform key 'normalize': expected 3 means and 3 positive stds, got {norm}")
    fill = tuple(int(255 * m) for m in mean)  # as the official code: (123, 116, 103) for ImageNet
    steps = []
    scale = _scale_from(cfg["scale"]) if cfg.get("scale") is not None else None
    crop = RandomCrop(cfg["crop"], fill) if cfg.get("crop") is not None else None
    if scale and crop:
        steps.append(ScaleThenCrop(scale, crop))
    else:
        steps += [step for step in (scale, crop) if step is not None]
    if cfg.get("hflip") is not None:
        steps.append(HorizontalFlip(cfg["hflip"]))
    if cfg.get("randaug") is not None:
        steps.append(_RandAugStep(RandAugment(fill=fill, **_kwargs(cfg["randaug"], "randaug",
                                                                  ("num_ops", "magnitude", "ops")))))
    if cfg.get("color_jitter") is not None:
        steps.append(ColorJitter(**_kwargs(cfg["color_jitter"], "color_jitter",
                                           ("brightness", "contrast", "saturation", "hue", "prob"))))
    if cfg.get("resize") is not None:
        steps.append(Resize(cfg["resize"], cfg.get("resize_mask", False)))
    return SegTransform(steps, mean, std)
