"""Datasets, joint transforms and class-uniform sampling (RegSeg Sec 3.6 and 4.1-4.3, DSNet Sec 4.1,
DWRSeg Sec 4.1, FASSD-Net Sec IV-A; Mapillary Vistas for the official codes' pretraining). See
docs/data.md.

    ds = build_dataset({"dataset": "toy", "size": 128, "widths": [4, 8, 16]}, "train", train=True)
    image, mask = ds[0]          # float32 3xHxW normalised, int64 HxW (255 = ignore)
    sampler = ClassUniformSampler(ds, percent=0.5, seed=0)
"""
from .base import DataError, SampleRequest, SegmentationDataset
from .build import DATASETS, build_dataset, build_sampler, check_spec
from .camvid import CamVid
from .classes import CLASS_NAMES, IGNORE_INDEX, PALETTES, colorize, palette_for
from .datasets import ADE20K, BDD100K, Cityscapes
from .folder import FolderDataset
from .imagefolder import ImageFolder
from .mapillary import MapillaryVistas
from .preview import preview_grid, save_preview
from .randaug import RandAugment
from .sampler import ClassPresence, ClassUniformSampler
from .toy import ToyRectangles
from .transforms import IMAGENET_MEAN, IMAGENET_STD, SegTransform, build_transforms

__all__ = [
    "ADE20K", "BDD100K", "CLASS_NAMES", "CamVid", "Cityscapes", "ClassPresence", "ClassUniformSampler",
    "DATASETS", "DataError", "FolderDataset", "ImageFolder", "IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD",
    "MapillaryVistas", "PALETTES", "RandAugment", "SampleRequest", "SegTransform",
    "SegmentationDataset", "ToyRectangles", "build_dataset", "build_sampler", "build_transforms",
    "check_spec", "colorize", "palette_for", "preview_grid", "save_preview",
]
