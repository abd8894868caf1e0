"""A generic folder of people's own data.

Layout::

    root/classes.txt            one class per line: "name" or "name r g b" (palette colour)
    root/images/SPLIT/X.jpg     any of .png .jpg .jpeg .bmp .tif .tiff .webp
    root/masks/SPLIT/X.png      index mask: 0..C-1 = class, 255 = ignore

or, without split folders, ``root/images/X.*`` + ``root/masks/X.png`` with ``root/SPLIT.txt``
listing the stems (or image file names) of each split; split ``all`` takes every image.
"""
from __future__ import annotations

from pathlib import Path

from .base import IMAGE_EXTENSIONS, DataError, SegmentationDataset
from .classes import palette_for, identity_lut
from .datasets import require_dir, split_parts


def read_class_list(path: Path):
    """classes.txt -> (names, palette or None). Blank lines and '#' comments are skipped."""
    if not path.is_file():
        raise DataError(f"{path}: class list is missing; expected one class name per line")
    names, colours = [], []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) >= 4 and all(f.isdigit() for f in fields[-3:]):
            rgb = tuple(int(f) for f in fields[-3:])
            if max(rgb) > 255:
                raise DataError(f"{path}:{line_no}: colour {rgb} out of 0..255")
            names.append(" ".join(fields[:-3]))
            colours.append(rgb)
        else:
            names.append(" ".join(fields))
    if not names:
        raise DataError(f"{path}: no class names")
    if len(names) > 255:
        raise DataError(f"{path}: {len(names)} classes; at most 255 fit beside ignore=255")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names repeat")
    if colours and len(colours) != len(names):
        raise DataError(f"{path}: give a colour for every class or for none")
    return tuple(names), (tuple(colours) if colours else None)


class FolderDataset(SegmentationDataset):
    """``images/`` + ``masks/`` + ``classes.txt``; see the module docstring."""

    def __init__(self, root, split: str = "train", transform=None, skip_bad: bool = False,
                 classes_file: str = "classes.txt"):
        root = Path(root)
        names, palette = read_class_list(root / classes_file)
        super().__init__(names, palette or palette_for(names), transform, "folder", split, skip_bad)
        self.mask_table = identity_lut(len(names))
        files = []
        for part in split_parts(split, trainval_alias=False):
            files += self._part_files(root, part)
        self._finish(files, root / "images" / split)

    @staticmethod
    def _part_files(root: Path, part: str):
        images, masks = require_dir(root / "images", "root/images/ with root/masks/"), root / "masks"
        if (images / part).is_dir():
            images, masks = images / part, masks / part
            stems = None
        elif (root / f"{part}.txt").is_file():
            stems = [Path(s.strip()).stem for s in (root / f"{part}.txt").read_text().splitlines() if s.strip()]
        elif part == "all":
            stems = None
        else:
            raise DataError(f"{root}: split {part!r} not found; expected root/images/{part}/, "
                            f"root/{part}.txt or split 'all'")
        found = {p.stem: p for p in sorted(images.iterdir())
                 if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}
        if stems is None:
            stems = sorted(found)
        files = []
        for stem in stems:
            image = found.get(stem)
            if image is None:
                image = images / f"{stem}.png"  # reported as missing by _finish
            files.append((image, masks / f"{stem}.png"))
        return files
