"""The dataset contract every atrous dataset follows.

A :class:`SegmentationDataset` holds a sorted list of ``(image_path, mask_path)`` pairs and a
lookup table from the values stored in its masks to train ids (``0..C-1`` or 255 = ignore).
``load(i)`` returns the raw sample (PIL RGB image, int64 mask of train ids) and checks it;
``dataset[item]`` applies the transform. ``item`` is an index or a :class:`SampleRequest`
(index, per-sample seed, crop centre) as yielded by :class:`atrous.data.ClassUniformSampler`.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from ..progress import progress as progress_bar

from ..errors import UserError
from .classes import IGNORE_INDEX, palette_for

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataError(UserError):
    """A bad sample or layout; the message names the file and what was expected."""


class SampleRequest(NamedTuple):
    """What a sampler asks of a dataset: which sample, the seed of its augmentation, and (for
    class-uniform sampling) the class to show and a pixel ``(y, x)`` of that class in the mask
    of ``load(index)`` around which the crop is taken."""

    index: int
    seed: int | None = None
    class_id: int | None = None
    center: tuple[int, int] | None = None


def read_image(path) -> Image.Image:
    """An RGB image, fully decoded (so a truncated file fails here, naming the file)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: unreadable or truncated image ({err})") from None


def read_mask(path, rgb: bool = False) -> np.ndarray:
    """The stored mask values: HxW for index masks (L, P, I;16 ...), HxWx3 for RGB label images
    (and for any mask when ``rgb``, e.g. a palettised colour label picture)."""
    try:
        with Image.open(path) as im:
            im.load()
            if rgb or im.mode in ("RGB", "RGBA"):
                return np.asarray(im.convert("RGB"))
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: unreadable or truncated mask ({err})") from None


def decode_with_lut(raw: np.ndarray, table: np.ndarray, path, num_classes: int) -> np.ndarray:
    """Map stored values through ``table`` (-1 = invalid) and reject any invalid value."""
    if raw.ndim == 3 and (raw == raw[..., :1]).all():
        raw = raw[..., 0]  # an index mask saved as grey RGB
    if raw.ndim != 2:
        raise DataError(f"{path}: expected a single-channel index mask, got shape {raw.shape}")
    if raw.dtype == np.uint8 and len(table) >= 256:
        mask = table[raw]  # every uint8 value indexes the table: only the mapping can be invalid
        bad = mask < 0
    else:
        raw = raw.astype(np.int64, copy=False)
        bad = (raw < 0) | (raw >= len(table))
        mask = table[np.where(bad, 0, raw)]
        bad |= mask < 0
    if bad.any():
        values = np.unique(raw[bad])[:10].tolist()
        raise DataError(f"{path}: mask values {values} are neither a class (0..{num_classes - 1} "
                        f"after mapping) nor ignore")
    return mask


def to_tensors(image: Image.Image, mask: np.ndarray, mean=None, std=None):
    """PIL RGB + int mask -> (float32 3xHxW normalised, int64 HxW)."""
    from ..weights.record import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN if mean is None else mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD if std is None else std, dtype=torch.float32)[:, None, None]
    x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
    x = (x / 255.0 - mean) / std
    return x.contiguous(), torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))


class SegmentationDataset(Dataset):
    """Image/mask pairs with class names; see the module docstring for the contract.

    Subclasses set ``files`` and ``mask_table`` (or override :meth:`decode_mask`, or ``load``
    for in-memory data) and call :meth:`_finish` once their file list is known.
    """

    ignore_index = IGNORE_INDEX
    mask_table: np.ndarray | None = None
    rgb_masks = False  # masks are colour pictures (read as RGB whatever their PNG mode)

    def __init__(self, classes, palette=None, transform=None, name: str = "dataset",
                 split: str = "", skip_bad: bool = False):
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.palette = tuple(tuple(int(v) for v in c) for c in (palette or palette_for(self.classes)))
        if len(self.palette) != self.num_classes:
            raise UserError(f"{name}: {len(self.palette)} palette colours for {self.num_classes} classes")
        self.transform = transform
        self.name, self.split, self.skip_bad = name, split, skip_bad
        self.files: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []  # (file, reason) of samples left out by skip_bad
        self._presence = None

    # ------------------------------------------------------------------ building the file list
    def _finish(self, files, where) -> None:
        """Sort and check the pairs: missing files raise (or are skipped with skip_bad), an empty
        split raises naming ``where``. With skip_bad every sample is also decoded once."""
        files = sorted((os.fspath(i), os.fspath(m)) for i, m in files)
        kept = []
        for image_path, mask_path in files:
            reason = None
            if not os.path.isfile(image_path):
                reason = f"{image_path}: image file is missing"
            elif not os.path.isfile(mask_path):
                reason = f"{mask_path}: mask file is missing (for image {image_path})"
            if reason and not self.skip_bad:
                raise DataError(reason)
            if reason:
                self.skipped.append((image_path, reason))
            else:
                kept.append((image_path, mask_path))
        self.files = kept
        if self.skip_bad:
            good = []
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                problems = pool.map(self._problem, range(len(self.files)))
                for pair, problem in zip(self.files, progress_bar(problems, total=len(self.files), leave=False,
                                                          desc=f"checking {self.name} {self.split}")):
                    if problem:
                        self.skipped.append((pair[0], problem))
                    else:
                        good.append(pair)
            self.files = good
        if self.skipped:
            warnings.warn(f"{self.name} {self.split}: skipped {len(self.skipped)} bad sample(s) of "
                          f"{len(files)} (skip_bad); first: {self.skipped[0][1]}", stacklevel=3)
        if not self.files:
            raise DataError(f"{where}: split {self.split!r} of {self.name} is empty"
                            + (f" after skipping {len(self.skipped)} bad sample(s)" if self.skipped else ""))

    def _problem(self, index: int) -> str | None:
        """Why sample ``index`` is bad, or None."""
        try:
            self.load(index)
        except DataError as err:
            return str(err)
        return None

    # ------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return len(self.files)

    def decode_mask(self, raw: np.ndarray, path) -> np.ndarray:
        """Stored mask values -> int64 train ids (255 = ignore); raises DataError naming ``path``."""
        return decode_with_lut(raw, self.mask_table, path, self.num_classes)

    def load(self, index: int):
        """``(PIL RGB image, int64 HxW mask of train ids)`` before any transform, checked."""
        image_path, mask_path = self.files[index]
        image = read_image(image_path)
        raw = read_mask(mask_path, self.rgb_masks)
        if raw.shape[:2] != (image.height, image.width):
            raise DataError(f"{mask_path}: mask is {raw.shape[1]}x{raw.shape[0]} (WxH) but image "
                            f"{image_path} is {image.width}x{image.height}")
        return image, self.decode_mask(raw, mask_path)

    def load_mask(self, index: int) -> np.ndarray:
        """The int64 train-id mask of sample ``index`` alone (for class statistics)."""
        mask_path = self.files[index][1]
        return self.decode_mask(read_mask(mask_path, self.rgb_masks), mask_path)

    def __getitem__(self, item):
        request = item if isinstance(item, SampleRequest) else SampleRequest(int(item))
        image, mask = self.load(request.index)
        if self.transform is None:
            return to_tensors(image, mask)
        rng = None if request.seed is None else np.random.default_rng(request.seed)
        return self.transform(image, mask, rng=rng, center=request.center)

    # ------------------------------------------------------------------ class-uniform sampling
    def class_presence(self, tile_size: int = 1024, progress: bool = True, cache_dir=None):
        """Per-image class pixel counts and per-class crop centres, computed once and cached on
        the dataset, and in ``cache_dir`` when given (keyed by the files, their sizes and times,
        so a changed mask is re-read). See :func:`atrous.data.sampler.compute_class_presence`."""
        if self._presence is not None and self._presence.tile_size == tile_size:
            return self._presence
        from .sampler import compute_class_presence, load_presence, save_presence

        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"class_presence-{self.name}-{self._fingerprint(tile_size)}.npz"
            self._presence = load_presence(path)
        if self._presence is None:
            self._presence = compute_class_presence(self, tile_size=tile_size, progress=progress)
            if path is not None:
                save_presence(self._presence, path)
        return self._presence

    def _fingerprint(self, tile_size: int) -> str:
        digest = hashlib.sha1(f"{type(self).__name__}|{self.classes}|{tile_size}|{self.split}".encode())
        for image_path, mask_path in self.files:
            stat = os.stat(mask_path)
            digest.update(f"|{image_path}|{mask_path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        if not self.files:
            digest.update(repr(self).encode())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, samples={len(self)}, "
                f"classes={self.num_classes})")
