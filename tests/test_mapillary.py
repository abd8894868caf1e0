"""Mapillary Vistas on a tiny tree of the official layout: both versions, the config file, the
unlabeled and regseg45 options, the class tables, and the errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from atrous.data import CLASS_NAMES, PALETTES, DataError, MapillaryVistas, build_dataset
from atrous.data.classes import MAPILLARY_V12_LABELS, MAPILLARY_V20_LABELS

ROW = [0, 2, 13, 21, 64, 65, 122, 123]  # stored label values, one per column


def save_label(path, values, palette):
    """A palettised index PNG as the release stores them (value k = label k)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(np.array([values, values], np.uint8), mode="P")
    colours = list(palette) + [(0, 0, 0)] * (256 - len(palette))  # a short palette makes PIL renumber
    picture.putpalette([v for colour in colours for v in colour])
    picture.save(path)


def make_tree(root, stems=("b_key", "a_key"), values=ROW):
    for folder in ("training", "validation"):
        for stem in stems:
            (root / folder / "images").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (len(values), 2), (9, 9, 9)).save(root / folder / "images" / f"{stem}.jpg")
            save_label(root / folder / "v1.2" / "labels" / f"{stem}.png", [min(v, 65) for v in values],
                       [c for _, c in MAPILLARY_V12_LABELS])
            save_label(root / folder / "v2.0" / "labels" / f"{stem}.png", values, [c for _, c in MAPILLARY_V20_LABELS])
    return root


def test_class_tables():
    v12, v20 = dict(MAPILLARY_V12_LABELS), dict(MAPILLARY_V20_LABELS)
    assert len(MAPILLARY_V12_LABELS) == len(v12) == 66 and len(MAPILLARY_V20_LABELS) == len(v20) == 124
    assert MAPILLARY_V12_LABELS[13] == ("Road", (128, 64, 128)) and MAPILLARY_V20_LABELS[21] == ("Road", (128, 64, 128))
    assert MAPILLARY_V12_LABELS[-1] == MAPILLARY_V20_LABELS[-1] == ("Unlabeled", (0, 0, 0))
    assert len(set(v12.values())) == 66  # every v1.2 colour names one label
    # the 63 labels of both versions keep their colour, except v2.0's white crosswalk markings
    changed = {name for name in v12 if name in v20 and v12[name] != v20[name]}
    assert len([n for n in v12 if n in v20]) == 63 and changed == {"Lane Marking - Crosswalk"}
    assert len(CLASS_NAMES["mapillary"]) == len(PALETTES["mapillary"]) == 65
    assert len(CLASS_NAMES["mapillary_v2.0"]) == len(PALETTES["mapillary_v2.0"]) == 123


def test_v12_unlabeled_is_ignored_by_default(tmp_path):
    ds = build_dataset({"dataset": "mapillary", "root": str(make_tree(tmp_path))}, "train", train=False)
    assert ds.num_classes == 65 and ds.classes[13] == "Road" and ds.palette[13] == (128, 64, 128)
    assert [f[0][-9:] for f in ds.files] == ["a_key.jpg", "b_key.jpg"]
    assert ds.files[0][1].endswith("training/v1.2/labels/a_key.png")
    assert ds.load(0)[1][0].tolist() == [0, 2, 13, 21, 64, 255, 255, 255]
    assert len(MapillaryVistas(tmp_path, "trainval")) == 4


def test_unlabeled_as_a_class_and_v20(tmp_path):
    make_tree(tmp_path)
    ds = MapillaryVistas(tmp_path, "val", unlabeled="class")  # DSNet's code: 66 classes
    assert ds.num_classes == 66 and ds.load(0)[1][0].tolist() == [0, 2, 13, 21, 64, 65, 65, 65]
    v2 = MapillaryVistas(tmp_path, "val", version="v2.0")
    assert v2.num_classes == 123 and v2.classes[122] == "Static" and v2.classes[21] == "Road"
    assert v2.load(1)[1][0].tolist() == [0, 2, 13, 21, 64, 65, 122, 255]


def test_regseg45(tmp_path):
    ds = MapillaryVistas(make_tree(tmp_path), "train", classes="regseg45")
    assert ds.num_classes == 45 and ds.classes[:2] == ("Curb", "Fence") and ds.classes[-1] == "Ego Vehicle"
    # Bird (0) is dropped, Curb (2) is the first class, Road (13) the 10th, Ego Vehicle (64) the last
    assert ds.load(0)[1][0].tolist() == [255, 0, 9, 17, 44, 255, 255, 255]
    for options in ({"version": "v2.0"}, {"unlabeled": "class"}):
        with pytest.raises(DataError, match="regseg45 is RegSeg's reduction"):
            MapillaryVistas(tmp_path, "train", classes="regseg45", **options)


def test_config_file_decides_the_classes(tmp_path):
    make_tree(tmp_path, values=[0, 1, 2])
    labels = [{"name": "a--x", "readable": "X", "color": [1, 2, 3], "evaluate": True},
              {"name": "a--y", "readable": "Y", "color": [4, 5, 6], "evaluate": True},
              {"name": "void--unlabeled", "readable": "Unlabeled", "color": [0, 0, 0], "evaluate": False}]
    (tmp_path / "config_v1.2.json").write_text(json.dumps({"labels": labels}))
    ds = MapillaryVistas(tmp_path, "train")
    assert ds.classes == ("X", "Y") and ds.palette == ((1, 2, 3), (4, 5, 6))
    assert ds.load(0)[1][0].tolist() == [0, 1, 255]
    (tmp_path / "config_v1.2.json").write_text(json.dumps({"labels": [{"readable": "X"}]}))
    with pytest.raises(DataError, match=r"config_v1\.2\.json: expected a Mapillary Vistas config"):
        MapillaryVistas(tmp_path, "train")


@pytest.mark.parametrize("options, split, message", [
    ({"version": 1.2}, "train", r"data.version: 1.2 is not a Mapillary Vistas version; expected v1.2 or v2.0"),
    ({"unlabeled": "keep"}, "train", r"data.unlabeled: 'keep'; expected ignore or class"),
    ({}, "test", r"mapillary split 'test': expected train, val or trainval"),
    ({"version": "v2.0"}, "train", r"training/v2.0/labels/a_key.png: mask file is missing"),
])
def test_errors_are_one_line(tmp_path, options, split, message):
    make_tree(tmp_path)
    for path in (tmp_path / "training" / "v2.0").rglob("*.png"):
        path.unlink()
    with pytest.raises(DataError, match=message) as caught:
        MapillaryVistas(tmp_path, split, **options)
    assert "\n" not in str(caught.value)


def test_values_past_the_labels_name_the_file(tmp_path):
    make_tree(tmp_path)
    save_label(tmp_path / "training" / "v1.2" / "labels" / "a_key.png", [0, 66, 200] + [0] * 5, [(0, 0, 0)])
    with pytest.raises(DataError, match=r"a_key\.png: mask values \[66, 200\]"):
        MapillaryVistas(tmp_path, "train").load(0)
