"""Datasets on small generated trees of the real layouts, the toy set, real CamVid, bad data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from atrous.data import CLASS_NAMES, PALETTES, build_dataset, palette_for
from conftest import shared


def test_class_tables():
    assert len(CLASS_NAMES["cityscapes"]) == 19 and len(CLASS_NAMES["camvid"]) == 11
    assert len(CLASS_NAMES["ade20k"]) == 150 and len(set(CLASS_NAMES["ade20k"])) == 150
    assert CLASS_NAMES["bdd100k"] == CLASS_NAMES["cityscapes"]
    for name, classes in CLASS_NAMES.items():
        assert len(PALETTES[name]) == len(classes), name
    assert palette_for(["a", "b", "c"]) == palette_for(["x", "y", "z"])
    assert len(set(palette_for(range(150)))) == 150


def test_toy_is_deterministic_and_labels_full_height():
    spec = {"dataset": "toy", "size": 64, "widths": [2, 4, 8], "count": 3, "num_classes": 3, "seed": 5}
    a, b = build_dataset(spec, "train", train=False), build_dataset(spec, "train", train=False)
    im_a, m_a = a.load(1)
    im_b, m_b = b.load(1)
    assert np.array_equal(np.asarray(im_a), np.asarray(im_b)) and np.array_equal(m_a, m_b)
    assert (m_a == m_a[:1]).all()  # each column holds one class over the whole height
    assert set(np.unique(m_a)) <= {0, 1, 2} and (m_a > 0).any()
    other = build_dataset({**spec, "seed": 6}, "train", train=False).load(1)[1]
    val = build_dataset(spec, "val", train=False).load(1)[1]
    assert not np.array_equal(m_a, other) and not np.array_equal(m_a, val)
    x, y = a[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_unknown_data_key_names_it():
    with pytest.raises(ValueError, match="data.sise"):
        build_dataset({"dataset": "toy", "sise": 64}, "train", train=True)
    with pytest.raises(ValueError, match="'flip'"):
        build_dataset({"dataset": "toy", "transforms": {"train": {"flip": 0.5}}}, "train", train=True)


def test_real_camvid_segnet_layout():
    ds = build_dataset({"dataset": "camvid", "root": str(shared("data", "camvid"))}, "val", train=False)
    assert len(ds) == 101 and ds.files == sorted(ds.files)
    image, mask = ds.load(0)
    assert image.size == (480, 360) and mask.shape == (360, 480)
    assert set(np.unique(mask)) <= set(range(11)) | {255}
    x, y = ds[0]
    assert x.shape == (3, 360, 480) and y.shape == (360, 480)


@pytest.mark.filterwarnings("ignore:.*never occur")  # 4 frames lack fence and bicyclist
def test_real_camvid_class_uniform_crops_show_the_class():
    from atrous.data import ClassUniformSampler

    spec = {"dataset": "camvid", "root": str(shared("data", "camvid")),
            "transforms": {"train": {"scale": {"shorter_side": [288, 720]}, "crop": [128, 128], "hflip": 0.5,
                                     "randaug": {"num_ops": 2, "magnitude": 0.2}}}}
    ds = build_dataset(spec, "train", train=True)
    ds.files = ds.files[:4]  # a few real frames keep this fast
    sampler = ClassUniformSampler(ds, percent=1.0, num_samples=8, seed=0, progress=False)
    for request in sampler:
        x, y = ds[request]
        assert x.shape == (3, 128, 128)
        # the crop holds the class even after RandAug's rotation (<= 6 degrees here)
        assert (y == request.class_id).any(), request


def test_toy_class_is_shown_only_at_the_bottom():
    spec = {"dataset": "toy", "size": [40, 96], "widths": [3, 6], "count": 2, "num_classes": 5,
            "cue": 5, "noise": 0, "seed": 0}
    ds = build_dataset(spec, "train", train=False)
    image, mask = ds.load(0)
    rgb = np.asarray(image)
    body, cue = rgb[:35][mask[:35] > 0], rgb[35:][mask[35:] > 0]
    assert (body == 160).all()  # every rectangle looks the same above its cue
    colours = np.asarray(ds.palette)[mask[35:][mask[35:] > 0]]
    assert np.array_equal(cue, colours)  # the cue shows the class colour
    assert len(np.unique(mask[mask > 0])) > 1 and (mask == 0).any()
