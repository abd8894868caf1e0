"""Loaders for the papers' datasets: Cityscapes, ADE20K and BDD100K (CamVid is in camvid.py,
the generic folder in folder.py, the toy set in toy.py). Each lists its files from the official
layout, sorted, and maps the stored mask values to train ids with 255 = ignore.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .base import DataError, SegmentationDataset, decode_with_lut
from .classes import (ADE20K_CLASSES, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX,
                      PALETTES, cityscapes_label_lut, identity_lut, lut)


def split_parts(split: str, trainval_alias: bool = True) -> list[str]:
    """``"train+val"`` -> ``["train", "val"]``; ``"trainval"`` (the official RegSeg configs' name,
    for the test-server runs) means the same unless ``trainval_alias`` is off."""
    if trainval_alias and split == "trainval":
        return ["train", "val"]
    parts = [p for p in split.split("+") if p]
    if not parts:
        raise UserError(f"split {split!r}: expected a name like 'train' or 'train+val'")
    return parts


def require_dir(path: Path, expected: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: folder is missing; expected {expected}")
    return path


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations (Cordts et al. 2016), 19 classes.

    Layout: ``root/leftImg8bit/SPLIT/CITY/X_leftImg8bit.png`` and
    ``root/gtFine/SPLIT/CITY/X_gtFine_labelTrainIds.png`` when present (cityscapesScripts'
    createTrainIdLabelImgs), else ``X_gtFine_labelIds.png`` mapped to the 19 trainIds on the fly.
    """

    SUFFIX = "_leftImg8bit.png"

    def __init__(self, root, split: str = "train", transform=None, skip_bad: bool = False):
        super().__init__(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, transform, "cityscapes", split, skip_bad)
        root = Path(root)
        self._label_lut, self._train_lut = cityscapes_label_lut(), identity_lut(19)
        files = []
        for part in split_parts(split):
            images = require_dir(root / "leftImg8bit" / part,
                                 f"root/leftImg8bit/{part}/CITY/*{self.SUFFIX} (Cityscapes layout)")
            for image in sorted(images.glob(f"*/*{self.SUFFIX}")):
                stem = image.name[: -len(self.SUFFIX)]
                gt = root / "gtFine" / part / image.parent.name / f"{stem}_gtFine_labelTrainIds.png"
                if not gt.is_file():
                    gt = gt.with_name(f"{stem}_gtFine_labelIds.png")
                files.append((image, gt))
        self._finish(files, root / "leftImg8bit" / split)

    def decode_mask(self, raw, path):
        table = self._train_lut if str(path).endswith("_labelTrainIds.png") else self._label_lut
        return decode_with_lut(raw, table, path, self.num_classes)


class ADE20K(SegmentationDataset):
    """ADE20K SceneParsing (ADEChallengeData2016), 150 classes; mask value 0 ("other") is ignore
    and value k is class k-1 (DSNet Sec 4.1).

    Layout: ``root/images/{training,validation}/ADE_*.jpg`` and ``root/annotations/.../ADE_*.png``;
    ``root`` may be ADEChallengeData2016 or its parent. Split names train/val are accepted.
    """

    SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}

    def __init__(self, root, split: str = "train", transform=None, skip_bad: bool = False):
        super().__init__(ADE20K_CLASSES, PALETTES["ade20k"], transform, "ade20k", split, skip_bad)
        root = Path(root)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        mapping = {0: IGNORE_INDEX}
        mapping.update({k: k - 1 for k in range(1, 151)})
        self.mask_table = lut(mapping)
        files = []
        for part in split_parts(split):
            if part not in self.SPLITS:
                raise UserError(f"ade20k split {part!r}: expected one of {sorted(self.SPLITS)}")
            folder = self.SPLITS[part]
            images = require_dir(root / "images" / folder, f"ADEChallengeData2016/images/{folder}/*.jpg")
            for image in sorted(images.glob("*.jpg")):
                files.append((image, root / "annotations" / folder / f"{image.stem}.png"))
        self._finish(files, root / "images" / split)


class BDD100K(SegmentationDataset):
    """BDD100K 10k semantic segmentation (Yu et al. 2020), 19 classes with the Cityscapes trainIds,
    255 = ignore (DSNet Sec 4.1).

    Layouts: ``root/images/10k/SPLIT/X.jpg`` + ``root/labels/sem_seg/masks/SPLIT/X.png`` (current
    release) or ``root/seg/images/SPLIT/X.jpg`` + ``root/seg/labels/SPLIT/X_train_id.png`` (2018).
    """

    def __init__(self, root, split: str = "train", transform=None, skip_bad: bool = False):
        super().__init__(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, transform, "bdd100k", split, skip_bad)
        root = Path(root)
        self.mask_table = identity_lut(19)
        files = []
        for part in split_parts(split):
            new_images = root / "images" / "10k" / part
            old_images = root / "seg" / "images" / part
            if new_images.is_dir():
                masks = root / "labels" / "sem_seg" / "masks" / part
                files += [(p, masks / f"{p.stem}.png") for p in sorted(new_images.glob("*.jpg"))]
            elif old_images.is_dir():
                masks = root / "seg" / "labels" / part
                files += [(p, masks / f"{p.stem}_train_id.png") for p in sorted(old_images.glob("*.jpg"))]
            else:
                raise DataError(f"{new_images}: folder is missing; expected root/images/10k/{part}/*.jpg "
                                f"with root/labels/sem_seg/masks/{part}/*.png (or the 2018 root/seg/ layout)")
        self._finish(files, root / split)
