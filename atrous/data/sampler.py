"""Class-uniform sampling (RegSeg Sec 4.2 after Zhu et al. 2019 [44]), deterministic per epoch.

Design
------
* ``dataset.class_presence()`` reads every mask once and records, per image, the pixel count of
  each class and, per class, crop centres: the image is cut into ``tile_size`` tiles (the last
  ones partial, so images smaller than a tile still count) and in each tile where the class occurs
  a class pixel near its centroid is kept (the nearest on a 4-pixel grid, see image_centers).
  (The official code keeps the centroid itself, which can fall outside a class split in two, and
  skips images smaller than a tile.)
* ``ClassUniformSampler`` builds each epoch's list of :class:`SampleRequest` from
  ``(seed, epoch)`` only: ``percent`` of the samples are class-uniform (the classes present in the
  data share them equally, each taking random centres of its own, reused when it has few), the
  rest are random images; the list is shuffled and every request carries its own augmentation
  seed. Classes absent from the dataset get no share (the official build_epoch fails on them).
* The dataset reads ``request.center`` and the transform's crop contains that pixel, after the
  random scale has moved it: the sample shows the requested class.
* Sharding: every process builds the same global list; process ``rank`` of ``num_replicas`` takes
  ``list[rank::num_replicas]`` after padding by wrap-around to a multiple of ``num_replicas``, like
  DistributedSampler. It works as the ``sampler=`` of a DataLoader with any number of workers; the
  per-request seeds make the batches independent of the worker count, and ``set_epoch(e)``
  reproduces epoch ``e`` exactly, which is what resuming needs.
* ``percent=0`` gives a plain seeded shuffle with per-sample seeds (no masks are read).
"""
from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler

from ..errors import UserError
from ..progress import progress as progress_bar

from ..utils import atomic_path
from .base import SampleRequest


@dataclass(frozen=True)
class ClassPresence:
    """``counts[i, c]``: pixels of class c in image i. ``centers[c]``: int64 array of rows
    ``(image index, y, x)`` of crop centres of class c, in the coordinates of ``load(i)``."""

    counts: np.ndarray
    centers: tuple
    tile_size: int

    @property
    def present_classes(self) -> list[int]:
        return [c for c, pts in enumerate(self.centers) if len(pts)]


def _nearest_to_centroid(ys: np.ndarray, xs: np.ndarray) -> int:
    """Index of the point nearest to the points' centroid (the first in raster order on ties)."""
    return int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))


def image_centers(mask: np.ndarray, num_classes: int, tile_size: int, stride: int = 4):
    """{class: [(y, x), ...]}: per tile, a pixel of each class present near the class centroid.

    The search runs on every ``stride``-th row and column (16x fewer pixels at 4, which makes a
    Cityscapes mask take tens of milliseconds); a class present in the tile but too small to be
    hit by that grid is searched at full resolution. The point returned is always a pixel of
    its class."""
    out: dict[int, list[tuple[int, int]]] = {}
    h, w = mask.shape
    for ty in range(0, h, tile_size):
        for tx in range(0, w, tile_size):
            patch = mask[ty:ty + tile_size, tx:tx + tile_size]
            labelled = patch[(patch >= 0) & (patch < num_classes)]
            present = np.flatnonzero(np.bincount(labelled.ravel(), minlength=num_classes)).tolist()
            grid = patch[::stride, ::stride]
            for c in present:
                ys, xs = np.nonzero(grid == c)
                step = stride
                if ys.size == 0:
                    ys, xs = np.nonzero(patch == c)
                    step = 1
                k = _nearest_to_centroid(ys, xs)
                out.setdefault(c, []).append((ty + step * int(ys[k]), tx + step * int(xs[k])))
    return out


def compute_class_presence(dataset, tile_size: int = 1024, progress: bool = True,
                           workers: int | None = None) -> ClassPresence:
    """Read every mask of ``dataset`` once (``dataset.load_mask``) and collect its classes, in
    ``workers`` threads (default: up to 8 CPUs; decoding and numpy release the GIL). The result
    does not depend on the number of threads."""
    if tile_size < 1:
        raise UserError(f"class presence tile_size={tile_size}: expected >= 1")
    n, num_classes = len(dataset), dataset.num_classes

    def one(i):
        mask = dataset.load_mask(i)
        valid = mask[(mask >= 0) & (mask < num_classes)]
        return np.bincount(valid.ravel(), minlength=num_classes)[:num_classes], \
            image_centers(mask, num_classes, tile_size)

    counts = np.zeros((n, num_classes), dtype=np.int64)
    centers: list[list[tuple[int, int, int]]] = [[] for _ in range(num_classes)]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(one, range(n))
        for i, (count, image_points) in enumerate(progress_bar(results, total=n, desc=f"class presence ({dataset.name})",
                                                        disable=not progress, leave=False)):
            counts[i] = count
            for c, points in sorted(image_points.items()):
                centers[c].extend((i, y, x) for y, x in points)
    arrays = tuple(np.asarray(p, dtype=np.int64).reshape(-1, 3) for p in centers)
    return ClassPresence(counts, arrays, tile_size)


def save_presence(presence: ClassPresence, path) -> None:
    """Write ``presence`` to an .npz file atomically."""
    arrays = {"counts": presence.counts, "tile_size": np.array(presence.tile_size)}
    arrays.update({f"centers_{c}": pts for c, pts in enumerate(presence.centers)})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def load_presence(path) -> ClassPresence | None:
    """The cached presence at ``path``, or None when absent or unreadable."""
    try:
        with np.load(path) as data:
            counts = data["counts"]
            centers = tuple(data[f"centers_{c}"] for c in range(counts.shape[1]))
            return ClassPresence(counts, centers, int(data["tile_size"]))
    except (OSError, KeyError, ValueError):
        return None


class ClassUniformSampler(Sampler):
    """Yields :class:`SampleRequest` s; see the module docstring for the design.

    ``percent``: share of class-uniform samples (RegSeg: 0.5). ``num_samples``: samples per epoch
    over all processes (default ``len(dataset)``). ``num_replicas``/``rank``: sharding.
    ``tile_size``/``cache_dir``: passed to ``dataset.class_presence``.
    """

    def __init__(self, dataset, percent: float = 0.5, num_samples: int | None = None, seed: int = 0,
                 shuffle: bool = True, num_replicas: int = 1, rank: int = 0, tile_size: int = 1024,
                 progress: bool = True, cache_dir=None):
        if not 0.0 <= float(percent) <= 1.0:
            raise UserError(f"class-uniform percent={percent}: expected a value in [0, 1]")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"sampler rank={rank}, num_replicas={num_replicas}: expected 0 <= rank < num_replicas")
        self.dataset_size = len(dataset)
        if self.dataset_size == 0:
            raise UserError(f"{dataset!r}: cannot sample an empty dataset")
        self.num_samples = int(num_samples) if num_samples is not None else self.dataset_size
        if self.num_samples < 1:
            raise UserError(f"sampler num_samples={num_samples}: expected >= 1")
        self.percent, self.seed, self.shuffle = float(percent), int(seed), bool(shuffle)
        self.num_replicas, self.rank, self.epoch = int(num_replicas), int(rank), 0
        self.centers: tuple = ()
        self.present_classes: list[int] = []
        self.absent_classes: list[int] = []
        if self.percent > 0:
            presence = dataset.class_presence(tile_size=tile_size, progress=progress, cache_dir=cache_dir)
            self.centers = tuple(presence.centers[c] for c in presence.present_classes)
            self.present_classes = presence.present_classes
            self.absent_classes = [c for c in range(dataset.num_classes) if c not in self.present_classes]
            if self.absent_classes:
                warnings.warn(f"{dataset!r}: classes {self.absent_classes} never occur; class-uniform "
                              f"sampling shares its {self.percent:.0%} among the other "
                              f"{len(self.present_classes)}", stacklevel=2)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_requests(self, epoch: int | None = None) -> list[SampleRequest]:
        """The global (unsharded) list of requests of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        n = self.num_samples
        n_uniform = int(round(n * self.percent)) if self.centers else 0
        n_random = n - n_uniform
        order = rng.permutation(self.dataset_size) if self.shuffle else np.arange(self.dataset_size)
        items: list[tuple[int, int | None, tuple[int, int] | None]] = [
            (int(order[k % self.dataset_size]), None, None) for k in range(n_random)]
        if n_uniform:
            classes = len(self.centers)
            share = np.full(classes, n_uniform // classes, dtype=np.int64)
            share[rng.choice(classes, n_uniform - int(share.sum()), replace=False)] += 1
            for slot, (count, points) in enumerate(zip(share.tolist(), self.centers)):
                picks = rng.permutation(len(points))
                class_id = self.present_classes[slot]
                for k in range(count):
                    image, y, x = points[picks[k % len(points)]].tolist()
                    items.append((image, class_id, (y, x)))
        if self.shuffle:
            items = [items[k] for k in rng.permutation(len(items))]
        seeds = rng.integers(0, 2 ** 63 - 1, size=len(items), dtype=np.int64).tolist()
        return [SampleRequest(index, seed, class_id, center)
                for (index, class_id, center), seed in zip(items, seeds)]

    def __iter__(self):
        return iter(shard(self.epoch_requests(), len(self) * self.num_replicas, self.rank, self.num_replicas))

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.num_replicas)


def shard(items: list, total: int, rank: int, world: int) -> list:
    """Process ``rank``'s share of an epoch: the first ``total`` of ``items`` (repeated cyclically
    when there are fewer), dealt round-robin to ``world`` processes, so that the processes'
    ``k``-th items together are positions ``k*world .. k*world + world - 1``. The one place atrous
    splits data between processes (the trainer's epoch plan and this sampler)."""
    if not items:
        return []
    chosen = [items[k % len(items)] for k in range(total)]
    return chosen[rank:total:world]
