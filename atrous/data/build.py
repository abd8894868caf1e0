"""Datasets and samplers from a recipe's ``data:`` mapping.

::

    data:
      dataset: camvid            # toy | cityscapes | camvid | ade20k | bdd100k | mapillary | folder | imagefolder
      root: ../shared/data/camvid  # null for toy
      layout: auto               # dataset-specific options (see OPTIONS)
      holdout: [0006R0]          # camvid: sequences kept out of every split but ``holdout``
      skip_bad: false            # true: leave out bad samples and warn with their count
      class_uniform: 0.0         # share of class-uniform samples (RegSeg Cityscapes: 0.5)
      tile_size: 1024            # class-uniform crop centres: one per class per tile
      cache_dir: null            # folder caching the class statistics between runs
      transforms:
        train: {scale: {shorter_side: [288, 1152]}, crop: [720, 960], hflip: 0.5}
        val: {}
"""
from __future__ import annotations

from ..errors import UserError
from .camvid import CamVid
from .datasets import ADE20K, BDD100K, Cityscapes
from .folder import FolderDataset
from .imagefolder import ImageFolder, build_classification_transform
from .mapillary import MapillaryVistas
from .sampler import ClassUniformSampler
from .toy import ToyRectangles
from .transforms import build_transforms

DATASETS = {
    "toy": ToyRectangles,
    "cityscapes": Cityscapes,
    "camvid": CamVid,
    "ade20k": ADE20K,
    "bdd100k": BDD100K,
    "mapillary": MapillaryVistas,
    "folder": FolderDataset,
    "imagefolder": ImageFolder,  # classification (encoder pretraining): root/SPLIT/CLASS/*.jpg
}
COMMON_KEYS = ("dataset", "root", "skip_bad", "transforms", "class_uniform", "tile_size", "cache_dir")
OPTIONS = {
    "toy": ("size", "widths", "count", "num_classes", "seed", "cue", "noise"),
    "camvid": ("layout", "holdout"),
    "mapillary": ("version", "unlabeled", "classes"),
    "folder": ("classes_file",),
}


def check_spec(spec: dict) -> str:
    """Validate a ``data:`` mapping; returns the dataset name. Unknown keys raise naming the key."""
    if not isinstance(spec, dict):
        raise UserError(f"data: expected a mapping, got {type(spec).__name__}")
    name = spec.get("dataset")
    if name not in DATASETS:
        raise UserError(f"data.dataset: {name!r} is unknown; expected one of {', '.join(DATASETS)}")
    allowed = COMMON_KEYS + OPTIONS.get(name, ())
    for key in spec:
        if key not in allowed:
            raise UserError(f"data.{key}: unknown key for dataset {name!r}; expected one of {', '.join(allowed)}")
    transforms = spec.get("transforms") or {}
    if not isinstance(transforms, dict):
        raise UserError("data.transforms: expected a mapping with 'train' and/or 'val'")
    for key in transforms:
        if key not in ("train", "val"):
            raise UserError(f"data.transforms.{key}: unknown key; expected 'train' or 'val'")
    if name != "toy" and not spec.get("root"):
        raise UserError(f"data.root: dataset {name!r} needs the folder holding it")
    return name


def build_dataset(spec: dict, split: str, train: bool):
    """The dataset ``split`` (``train``, ``val``, ``train+val``, ...) with the recipe's train or
    val transforms attached."""
    name = check_spec(spec)
    options = {k: spec[k] for k in OPTIONS.get(name, ()) if k in spec}
    make = build_classification_transform if name == "imagefolder" else build_transforms
    try:
        transform = make((spec.get("transforms") or {}).get("train" if train else "val"), train)
    except ValueError as err:
        raise UserError(f"data.transforms.{'train' if train else 'val'}: {err}") from None
    skip_bad = bool(spec.get("skip_bad", False))
    if name == "toy":
        return ToyRectangles(split=split, transform=transform, skip_bad=skip_bad, **options)
    return DATASETS[name](spec["root"], split=split, transform=transform, skip_bad=skip_bad, **options)


def build_sampler(spec: dict, dataset, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                  num_samples: int | None = None, shuffle: bool = True) -> ClassUniformSampler:
    """The training sampler of a ``data:`` mapping: class-uniform with ``class_uniform`` percent
    (0 = plain seeded shuffle), sharded over ``num_replicas`` processes."""
    check_spec(spec)
    return ClassUniformSampler(dataset, percent=float(spec.get("class_uniform", 0.0) or 0.0),
                               num_samples=num_samples, seed=seed, shuffle=shuffle,
                               num_replicas=num_replicas, rank=rank,
                               tile_size=int(spec.get("tile_size", 1024)), progress=rank == 0,
                               cache_dir=spec.get("cache_dir"))
