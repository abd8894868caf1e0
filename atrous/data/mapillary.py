"""Mapillary Vistas (Neuhold et al. 2017), v1.2 (66 labels) and v2.0 (124 labels): the street-scene
set the official RegSeg and DSNet repositories pretrain on (neither paper names it).

Layout of the release (``root`` holds the config files)::

    root/config_v1.2.json, root/config_v2.0.json   the label lists (name, readable, color, ...)
    root/training/images/X.jpg                     likewise validation/ (testing/ has no labels)
    root/training/v1.2/labels/X.png                palettised index masks: value k = label k
    root/training/v2.0/labels/X.png

The class list is read from ``config_VERSION.json`` when present, else from the tables in
classes.py (the same lists). Options: ``unlabeled: ignore`` (default; as RegSeg's code, which
sets ``ignore_value: 65``, and the benchmark, which does not evaluate it) or ``class`` (as DSNet's
code, which trains the 66 v1.2 labels); ``classes: regseg45`` is RegSeg's reduced 45-class v1.2.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import DataError, SegmentationDataset
from .classes import (IGNORE_INDEX, MAPILLARY_REGSEG_DROPPED, MAPILLARY_UNLABELED, MAPILLARY_V12_LABELS,
                      MAPILLARY_V20_LABELS, lut)
from .datasets import require_dir, split_parts

MAPILLARY_LABELS = {"v1.2": MAPILLARY_V12_LABELS, "v2.0": MAPILLARY_V20_LABELS}
SPLIT_FOLDERS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


def read_config_labels(path: Path) -> tuple:
    """``config_VERSION.json`` -> ((readable name, (r, g, b)), ...) in file order."""
    try:
        labels = json.loads(path.read_text())["labels"]
        table = tuple((str(e.get("readable") or e["name"]), tuple(int(v) for v in e["color"])) for e in labels)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: expected a Mapillary Vistas config with 'labels' entries holding "
                        f"'readable' (or 'name') and 'color' ({type(err).__name__}: {err})") from None
    if not table or len(table) > 255 or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for _, c in table):
        raise DataError(f"{path}: expected 1..255 labels, each with an RGB 'color'")
    return table


def mapillary_classes(labels, unlabeled: str = "ignore", classes: str = "all"):
    """(names, palette, lookup table) for the stored labels: the ignored labels become 255, the
    others keep their order as train ids 0..C-1."""
    if unlabeled not in ("ignore", "class"):
        raise DataError(f"data.unlabeled: {unlabeled!r}; expected ignore or class")
    if classes not in ("all", "regseg45"):
        raise DataError(f"data.classes: {classes!r}; expected all or regseg45")
    names = [name for name, _ in labels]
    ignored = {MAPILLARY_UNLABELED} if unlabeled == "ignore" else set()
    if classes == "regseg45":
        missing = [n for n in MAPILLARY_REGSEG_DROPPED + (MAPILLARY_UNLABELED,) if n not in names]
        if unlabeled != "ignore" or len(labels) != len(MAPILLARY_V12_LABELS) or missing:
            raise DataError("data.classes: regseg45 is RegSeg's reduction of the 66 v1.2 labels; it needs "
                            "version v1.2 and unlabeled: ignore")
        ignored |= set(MAPILLARY_REGSEG_DROPPED)
    kept = [k for k, name in enumerate(names) if name not in ignored]
    mapping = {k: IGNORE_INDEX for k in range(len(labels))}
    mapping.update({k: train_id for train_id, k in enumerate(kept)})
    return tuple(names[k] for k in kept), tuple(labels[k][1] for k in kept), lut(mapping)


class MapillaryVistas(SegmentationDataset):
    """Mapillary Vistas semantic labels; see the module docstring. Splits: ``train``, ``val``,
    ``train+val`` (or ``trainval``)."""

    def __init__(self, root, split: str = "train", transform=None, skip_bad: bool = False,
                 version: str = "v1.2", unlabeled: str = "ignore", classes: str = "all"):
        root = Path(root)
        if version not in MAPILLARY_LABELS:
            raise DataError(f"data.version: {version!r} is not a Mapillary Vistas version; expected v1.2 or v2.0")
        config = root / f"config_{version}.json"
        labels = read_config_labels(config) if config.is_file() else MAPILLARY_LABELS[version]
        names, palette, table = mapillary_classes(labels, unlabeled, classes)
        super().__init__(names, palette, transform, "mapillary", split, skip_bad)
        self.version, self.mask_table = version, table
        files = []
        for part in split_parts(split):
            if part not in SPLIT_FOLDERS:
                raise DataError(f"mapillary split {part!r}: expected train, val or trainval (testing/ has "
                                f"no labels; atrous predict runs on its images)")
            folder = root / SPLIT_FOLDERS[part]
            images = require_dir(folder / "images", f"root/{folder.name}/images/*.jpg with "
                                                    f"root/{folder.name}/{version}/labels/*.png")
            masks = folder / version / "labels"
            files += [(p, masks / f"{p.stem}.png") for p in sorted(images.glob("*.jpg"))]
        self._finish(files, root / split)
