"""CamVid (Brostow et al. 2008), the 11-class protocol of RegSeg Sec 4.1 and DWRSeg Sec 4.1, in
its two common layouts:

* ``segnet``: SegNet's prepared copy (480x360): ``train/``, ``trainannot/`` (index masks, 11 =
  void), ``val/``, ``valannot/``, ``test/``, ``testannot/`` and optional ``train.txt``-style lists
  of ``image mask`` pairs. This is ../shared/data/camvid.
* ``original``: the 960x720 release with RGB label pictures: ``train/X.png``,
  ``train_labels/X_L.png`` (likewise val/test) and ``class_dict.csv`` (name,r,g,b) listing the 32
  original classes, merged into the 11 (CAMVID_32_TO_11; "void" -> ignore). A class_dict that
  already lists the 11 classes (and void) works too.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .base import DataError, SegmentationDataset
from .classes import CAMVID_32_TO_11, CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_SEGNET_VOID, IGNORE_INDEX, identity_lut
from .datasets import require_dir, split_parts

# 11-class names (and SegNet spellings) as they may appear in an 11-class class_dict.csv.
_ELEVEN = {"sky": 0, "building": 1, "pole": 2, "road": 3, "sidewalk": 4, "pavement": 4, "tree": 5,
           "signsymbol": 6, "fence": 7, "car": 8, "pedestrian": 9, "bicyclist": 10}


def _key(name: str) -> str:
    return "".join(name.lower().split()).replace("/", "")


def read_class_dict(path: Path) -> dict[int, int]:
    """class_dict.csv -> {24-bit colour: train id}. Unknown class names raise naming the file."""
    table = {}
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as err:
        raise DataError(f"{path}: cannot read the CamVid class list ({err})") from None
    first = 1
    if rows and (len(rows[0]) < 2 or not rows[0][1].strip().isdigit()):
        rows, first = rows[1:], 2  # header "name,r,g,b"
    for line, row in enumerate(rows, start=first):
        if not row:
            continue
        if len(row) != 4:
            raise DataError(f"{path}:{line}: expected 'name,r,g,b', got {row}")
        name = _key(row[0])
        train = CAMVID_32_TO_11.get(name, _ELEVEN.get(name))
        if train is None:
            raise DataError(f"{path}:{line}: class {row[0]!r} is not one of the 32 CamVid classes "
                            f"nor of the 11-class protocol")
        r, g, b = (int(v) for v in row[1:])
        table[(r << 16) | (g << 8) | b] = train
    if not table:
        raise DataError(f"{path}: no classes listed")
    return table


class CamVid(SegmentationDataset):
    """CamVid, 11 classes; ``layout`` is ``segnet``, ``original`` or ``auto`` (``original`` when
    ``root/class_dict.csv`` exists)."""

    def __init__(self, root, split: str = "train", transform=None, skip_bad: bool = False,
                 layout: str = "auto"):
        super().__init__(CAMVID_CLASSES, CAMVID_PALETTE, transform, "camvid", split, skip_bad)
        root = Path(root)
        if layout == "auto":
            layout = "original" if (root / "class_dict.csv").is_file() else "segnet"
        if layout not in ("segnet", "original"):
            raise ValueError(f"camvid layout {layout!r}: expected 'auto', 'segnet' or 'original'")
        self.layout = layout
        files = []
        if layout == "segnet":
            self.mask_table = identity_lut(11, ignore=(CAMVID_SEGNET_VOID, IGNORE_INDEX))
            for part in split_parts(split):
                files += self._segnet_files(root, part)
        else:
            self.rgb_masks = True
            colours = read_class_dict(root / "class_dict.csv")
            self._colour_keys = np.array(sorted(colours), dtype=np.int64)
            self._colour_ids = np.array([colours[k] for k in self._colour_keys], dtype=np.int64)
            for part in split_parts(split):
                images = require_dir(root / part, f"root/{part}/*.png with root/{part}_labels/*_L.png")
                labels = root / f"{part}_labels"
                files += [(p, labels / f"{p.stem}_L.png") for p in sorted(images.glob("*.png"))]
        self._finish(files, root / split)

    @staticmethod
    def _segnet_files(root: Path, part: str):
        listing = root / f"{part}.txt"
        if not listing.is_file():
            images = require_dir(root / part, f"root/{part}.txt or root/{part}/ with root/{part}annot/")
            return [(p, root / f"{part}annot" / p.name) for p in sorted(images.glob("*.png"))]
        pairs = []
        for line_no, line in enumerate(listing.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DataError(f"{listing}:{line_no}: expected 'image mask', got {line!r}")
            pairs.append(tuple(_resolve(root, f) for f in fields))
        return pairs

    def decode_mask(self, raw, path):
        if self.layout == "segnet":
            return super().decode_mask(raw, path)
        if raw.ndim != 3:
            raise DataError(f"{path}: expected an RGB label picture (original CamVid layout), "
                            f"got shape {raw.shape}")
        key = (raw[..., 0].astype(np.int64) << 16) | (raw[..., 1].astype(np.int64) << 8) | raw[..., 2]
        pos = np.clip(np.searchsorted(self._colour_keys, key), 0, len(self._colour_keys) - 1)
        bad = self._colour_keys[pos] != key
        if bad.any():
            colours = [((k >> 16) & 255, (k >> 8) & 255, k & 255) for k in np.unique(key[bad])[:5].tolist()]
            raise DataError(f"{path}: colours {colours} are not in class_dict.csv")
        return self._colour_ids[pos]


def _resolve(root: Path, field: str) -> Path:
    """A list entry relative to root; SegNet's own lists hold absolute /SegNet/CamVid/... paths,
    which are taken relative to root by their last two parts."""
    path = Path(field)
    if path.is_absolute():
        return path if path.exists() else root / Path(*path.parts[-2:])
    return root / path
