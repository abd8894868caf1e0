"""The toy dataset of RegSeg Sec 3.6 (Fig. 6): thin, full-height rectangles whose class is shown
only at their bottom, so a network must carry the label up the whole image.

Each image is drawn on demand from ``(seed, split, index)`` (no files, nothing stored): a dark
noisy background, rectangles spanning the full height with widths drawn from ``widths``, all of
the same grey body colour, each with a band of ``cue`` rows at the bottom in its class colour.
The mask labels the whole rectangle with its class and the background with class 0. The paper's
images are 1024x1024 and its thinnest rectangles 8 pixels wide (RegSeg, working at 1/16, fails on
those); both are options here, so a CPU can train on small ones.
"""
from __future__ import annotations

import zlib

import numpy as np
from PIL import Image

from ..errors import UserError
from .base import SegmentationDataset
from .classes import palette_for, toy_classes

BODY_GREY = 160


class ToyRectangles(SegmentationDataset):
    """RegSeg Sec 3.6 toy dataset. ``size`` is an int (square) or ``[h, w]``."""

    def __init__(self, split: str = "train", transform=None, size=1024, widths=(8, 16, 32, 64),
                 count: int = 100, num_classes: int = 4, seed: int = 0, cue: int | None = None,
                 noise: float = 8.0, skip_bad: bool = False):
        classes = toy_classes(int(num_classes))
        super().__init__(classes, ((0, 0, 0),) + palette_for(classes[1:]), transform, "toy", split, skip_bad)
        height, width = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        widths = tuple(int(w) for w in widths)
        if min(height, width) < 8:
            raise UserError(f"toy size {size}: expected at least 8 pixels per side")
        if not widths or min(widths) < 1 or max(widths) > width:
            raise UserError(f"toy widths {list(widths)}: expected positive widths no larger than the "
                             f"image width {width}")
        if int(count) < 1:
            raise UserError(f"toy count {count}: expected at least 1 image")
        self.height, self.width, self.widths = height, width, widths
        self.count, self.seed, self.noise = int(count), int(seed), float(noise)
        self.cue = int(cue) if cue is not None else max(2, height // 8)
        if not 1 <= self.cue < height:
            raise UserError(f"toy cue {cue}: expected 1 <= cue < height {height}")
        self._split_key = zlib.crc32(split.encode())

    def __len__(self) -> int:
        return self.count

    def load(self, index: int):
        """``(PIL RGB image, int64 mask)`` of image ``index``; the same every call."""
        if not 0 <= index < self.count:
            raise IndexError(f"toy index {index} out of range 0..{self.count - 1}")
        rng = np.random.default_rng([self.seed, self._split_key, index])
        h, w = self.height, self.width
        level = rng.integers(10, 60)
        image = np.full((h, w, 3), level, dtype=np.float32)
        mask = np.zeros((h, w), dtype=np.int64)
        colours = np.asarray(self.palette, dtype=np.float32)
        gap_lo, gap_hi = max(1, min(self.widths) // 2), 2 * max(self.widths) + 1
        x = int(rng.integers(0, gap_hi))
        while True:
            rect_w = int(rng.choice(self.widths))
            if x + rect_w > w:
                break
            cls = int(rng.integers(1, self.num_classes))
            mask[:, x:x + rect_w] = cls
            image[: h - self.cue, x:x + rect_w] = BODY_GREY
            image[h - self.cue:, x:x + rect_w] = colours[cls]
            x += rect_w + int(rng.integers(gap_lo, gap_hi))
        if self.noise > 0:
            image += rng.normal(0.0, self.noise, size=image.shape).astype(np.float32)
        image = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8), "RGB")
        return image, mask

    def load_mask(self, index: int) -> np.ndarray:
        return self.load(index)[1]

    def __repr__(self) -> str:
        return (f"ToyRectangles(split={self.split!r}, count={self.count}, size={self.height}x{self.width}, "
                f"widths={list(self.widths)}, classes={self.num_classes}, seed={self.seed})")
