"""CamVid (Brostow et al. 2008), the 11-class protocol of RegSeg Sec 4.1 and DWRSeg Sec 4.1, in
its two common layouts:

* ``segnet``: SegNet's prepared copy (480x360): ``train/``, ``trainannot/`` (index masks, 11 =
  void), ``val/``, ``valannot/``, ``test/``, ``testannot/`` and optional ``train.txt``-style lists
  of ``image mask`` pairs. This is ../shared/data/camvid.
* ``original``: the 960x720 release with RGB label pictures: ``train/X.png``,
  ``train_labels/X_L.png`` (likewise val/test) and ``class_dict.csv`` (name,r,g,b) listing the 32
  original classes, merged into the 11 (CAMVID_32_TO_11; "void" -> ignore). A class_dict that
  already lists the 11 classes (and void) works too.

CamVid is four video sequences, and every frame name starts with its sequence (``0001TP_006690``,
``0006R0_f00930``, ``0016E5_07959``, ``Seq05VD_f00000``). SegNet's split puts all 101 val frames in
0016E5, from which 204 of the 367 train frames also come. The ``holdout`` option keeps whole
sequences out of every split and gives them back as the split ``holdout``: the frames of those
sequences in train and val (docs/data.md).
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from .base import DataError, SegmentationDataset
from .classes import CAMVID_32_TO_11, CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_SEGNET_VOID, IGNORE_INDEX, identity_lut
from .datasets import require_dir, split_parts

# 11-class names (and SegNet spellings) as they may appear in an 11-class class_dict.csv.
_ELEVEN = {"sky": 0, "building": 1, "pole": 2, "road": 3, "sidewalk": 4, "pavement": 4, "tree": 5,
           "signsymbol": 6, "fence": 7, "car": 8, "pedestrian": 9, "bicyclist": 10}


# The four sequences of CamVid (Brostow et al. 2008), as the frame names spell them.
CAMVID_SEQUENCES = ("0001TP", "0006R0", "0016E5", "Seq05VD")
HOLDOUT_SPLIT = "holdout"


def camvid_sequence(path) -> str | None:
    """The sequence a frame belongs to, from its file name (``0016E5_07959.png`` -> ``0016E5``),
    or None for a name that starts with no CamVid sequence."""
    prefix = Path(path).name.split("_", 1)[0]
    return prefix if prefix in CAMVID_SEQUENCES else None


def check_holdout(holdout) -> tuple[str, ...]:
    """``data.holdout`` -> the held-out sequence names; unknown names raise a one-line DataError.
    A bare ``0016E5`` given with ``--set`` reads as the number 1.6e6, hence the hint."""
    if holdout is None:
        return ()
    names = [holdout] if isinstance(holdout, str) else holdout
    if not isinstance(names, (list, tuple)) or not names:
        raise DataError(f"data.holdout: expected one or more of {', '.join(CAMVID_SEQUENCES)}, got {holdout!r}")
    for name in names:
        if not isinstance(name, str):
            raise DataError(f"data.holdout: {name!r} is not a sequence name; write a list such as "
                            f"[0016E5] (a bare 0016E5 reads as a number)")
        if name not in CAMVID_SEQUENCES:
            raise DataError(f"data.holdout: {name!r} is not a CamVid sequence; expected some of "
                            f"{', '.join(CAMVID_SEQUENCES)}")
    return tuple(dict.fromkeys(names))


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
    ``root/class_dict.csv`` exists). ``holdout`` names sequences kept out of every split; the
    split ``holdout`` is their frames in train and val. ``sequences[i]`` is the sequence of
    ``files[i]`` (None for a name without one)."""

    def __init__(self, root, split: str = "train", transform=None, skip_bad: bool = False,
                 layout: str = "auto", holdout=None):
        super().__init__(CAMVID_CLASSES, CAMVID_PALETTE, transform, "camvid", split, skip_bad)
        root = Path(root)
        if layout == "auto":
            layout = "original" if (root / "class_dict.csv").is_file() else "segnet"
        if layout not in ("segnet", "original"):
            raise DataError(f"data.layout: {layout!r} is not a CamVid layout; expected auto, segnet or original")
        self.layout, self.holdout = layout, check_holdout(holdout)
        if layout == "segnet":
            self.mask_table = identity_lut(11, ignore=(CAMVID_SEGNET_VOID, IGNORE_INDEX))
        else:
            self.rgb_masks = True
            colours = read_class_dict(root / "class_dict.csv")
            self._colour_keys = np.array(sorted(colours), dtype=np.int64)
            self._colour_ids = np.array([colours[k] for k in self._colour_keys], dtype=np.int64)
        files = []
        for part in self._parts(split):
            files += self._segnet_files(root, part) if layout == "segnet" else self._original_files(root, part)
        self._finish(self._select_sequences(files, root), root / split)
        self.sequences = [camvid_sequence(image) for image, _ in self.files]

    def _parts(self, split: str) -> list[str]:
        """The folders a split reads: ``holdout`` reads train and val (then keeps the held-out
        sequences), any other split its own parts."""
        if split != HOLDOUT_SPLIT:
            parts = split_parts(split)
            if HOLDOUT_SPLIT in parts:
                raise DataError(f"camvid split {split!r}: 'holdout' is a split of its own, not a part")
            return parts
        if not self.holdout:
            raise DataError(f"camvid split 'holdout': set data.holdout to the sequences to hold out "
                            f"(some of {', '.join(CAMVID_SEQUENCES)})")
        return ["train", "val"]

    def _select_sequences(self, files, root: Path):
        """With ``holdout``: split ``holdout`` keeps the held-out sequences' frames, every other
        split drops them. A frame without a sequence name, or an empty result, raises."""
        if not self.holdout:
            return files
        keep_held = self.split == HOLDOUT_SPLIT
        kept = []
        for image, mask in files:
            sequence = camvid_sequence(image)
            if sequence is None:
                raise DataError(f"{image}: cannot tell its CamVid sequence for data.holdout (expected a "
                                f"name starting with one of {', '.join(CAMVID_SEQUENCES)} and '_')")
            if (sequence in self.holdout) == keep_held:
                kept.append((image, mask))
        if not kept:
            counts = Counter(camvid_sequence(image) for image, _ in files)
            found = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no frames"
            raise DataError(f"{root}: camvid split {self.split!r} with data.holdout "
                            f"{list(self.holdout)} is empty (its folders hold {found})")
        return kept

    def sequence_counts(self) -> dict[str, int]:
        """Frames per sequence in this split, e.g. ``{"0016E5": 101}`` for SegNet's val."""
        return dict(sorted(Counter(s or "unknown" for s in self.sequences).items()))

    @staticmethod
    def _original_files(root: Path, part: str):
        images = require_dir(root / part, f"root/{part}/*.png with root/{part}_labels/*_L.png")
        labels = root / f"{part}_labels"
        return [(p, labels / f"{p.stem}_L.png") for p in sorted(images.glob("*.png"))]

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
