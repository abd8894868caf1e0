"""Each dataset loader on a small generated tree of its real layout, and every bad-data error."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.data import ADE20K, BDD100K, CamVid, Cityscapes, DataError, FolderDataset, build_dataset
from atrous.data.classes import CITYSCAPES_LABEL_TO_TRAIN

H, W = 12, 16


def save_image(path, seed=0, size=(W, H), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)


def save_mask(path, values, size=(W, H)):
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.asarray(values)
    mask = np.resize(values, size[1] * size[0]).reshape(size[1], size[0]).astype(values.dtype)
    Image.fromarray(mask.astype(np.uint8)).save(path)
    return mask


# --------------------------------------------------------------------------- Cityscapes
def make_cityscapes(root, train_ids_for=()):
    for split, cities in (("train", ("zurich", "aachen")), ("val", ("lindau",))):
        for city in cities:
            for k in (2, 1):
                stem = f"{city}_{k:06d}_000019"
                save_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=k)
                gt = root / "gtFine" / split / city
                save_mask(gt / f"{stem}_gtFine_labelIds.png", [0, 7, 26, 33, 4, 11])
                if stem in train_ids_for:
                    save_mask(gt / f"{stem}_gtFine_labelTrainIds.png", [255, 0, 13, 18, 255, 2])


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    ds = Cityscapes(tmp_path, "train")
    assert [p[0].split("/")[-1] for p in ds.files] == [
        "aachen_000001_000019_leftImg8bit.png", "aachen_000002_000019_leftImg8bit.png",
        "zurich_000001_000019_leftImg8bit.png", "zurich_000002_000019_leftImg8bit.png"]
    _, mask = ds.load(0)
    assert mask.ravel()[:6].tolist() == [255, 0, 13, 18, 255, 2]
    assert CITYSCAPES_LABEL_TO_TRAIN[26] == 13
    assert len(Cityscapes(tmp_path, "train+val")) == 6
    assert Cityscapes(tmp_path, "trainval").files == Cityscapes(tmp_path, "train+val").files


def test_cityscapes_prefers_label_train_ids(tmp_path):
    make_cityscapes(tmp_path, train_ids_for=("aachen_000001_000019",))
    ds = Cityscapes(tmp_path, "train")
    assert ds.files[0][1].endswith("_gtFine_labelTrainIds.png")
    assert ds.files[1][1].endswith("_gtFine_labelIds.png")
    assert np.array_equal(ds.load(0)[1], ds.load(1)[1])


# --------------------------------------------------------------------------- CamVid
def test_camvid_segnet_with_and_without_lists(tmp_path):
    for name in ("b", "a"):
        save_image(tmp_path / "train" / f"{name}.png")
        save_mask(tmp_path / "trainannot" / f"{name}.png", [0, 10, 11, 3])
    ds = CamVid(tmp_path, "train")
    assert ds.layout == "segnet" and [f[0][-5:] for f in ds.files] == ["a.png", "b.png"]
    assert ds.load(0)[1].ravel()[:4].tolist() == [0, 10, 255, 3]
    # SegNet's own lists hold absolute /SegNet/CamVid/... paths
    (tmp_path / "train.txt").write_text("/SegNet/CamVid/train/b.png /SegNet/CamVid/trainannot/b.png\n")
    assert len(CamVid(tmp_path, "train")) == 1


CLASS_DICT = """name,r,g,b
Animal,64,128,64
Bicyclist,0,128,192
Building,128,0,0
Car,64,0,128
Column_Pole,192,192,128
LaneMkgsDriv,128,0,192
Road,128,64,128
Sky,128,128,128
Void,0,0,0
"""


def test_camvid_original_rgb_labels(tmp_path):
    (tmp_path / "class_dict.csv").write_text(CLASS_DICT)
    save_image(tmp_path / "val" / "0016E5_07959.png", size=(4, 2))
    colours = np.array([[[128, 64, 128], [128, 0, 192], [64, 128, 64], [0, 0, 0]],
                        [[128, 128, 128], [192, 192, 128], [0, 128, 192], [64, 0, 128]]], np.uint8)
    (tmp_path / "val_labels").mkdir()
    Image.fromarray(colours).save(tmp_path / "val_labels" / "0016E5_07959_L.png")
    ds = build_dataset({"dataset": "camvid", "root": str(tmp_path)}, "val", train=False)
    assert ds.layout == "original"
    assert ds.load(0)[1].tolist() == [[3, 3, 9, 255], [0, 2, 10, 8]]
    Image.fromarray(colours).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "val_labels" / "0016E5_07959_L.png")
    assert ds.load(0)[1].tolist() == [[3, 3, 9, 255], [0, 2, 10, 8]]  # a palettised label picture
    colours[0, 0] = (1, 2, 3)
    Image.fromarray(colours).save(tmp_path / "val_labels" / "0016E5_07959_L.png")
    with pytest.raises(DataError, match=r"0016E5_07959_L\.png.*\(1, 2, 3\)"):
        ds.load(0)
    (tmp_path / "class_dict.csv").write_text(CLASS_DICT + "Dragon,1,1,1\n")
    with pytest.raises(DataError, match="class_dict.csv.*Dragon"):
        CamVid(tmp_path, "val")


# --------------------------------------------------------------------------- ADE20K, BDD100K
def test_ade20k_zero_is_ignore(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    for split, tag in (("training", "train"), ("validation", "val")):
        save_image(base / "images" / split / f"ADE_{tag}_00000001.jpg", fmt="JPEG")
        save_mask(base / "annotations" / split / f"ADE_{tag}_00000001.png", [0, 1, 150, 7])
    ds = ADE20K(tmp_path, "val")  # the parent folder works too
    assert ds.num_classes == 150 and len(ds) == 1
    assert ds.load(0)[1].ravel()[:4].tolist() == [255, 0, 149, 6]
    save_mask(base / "annotations" / "training" / "ADE_train_00000001.png", [151])
    with pytest.raises(DataError, match=r"ADE_train_00000001\.png.*\[151\]"):
        ADE20K(base, "train").load(0)


@pytest.mark.parametrize("layout", ["current", "2018"])
def test_bdd100k_layouts(tmp_path, layout):
    for stem in ("7d2f7975-e0c1c5a7", "0a0a0b1a-7c39d841"):
        if layout == "current":
            save_image(tmp_path / "images" / "10k" / "val" / f"{stem}.jpg", fmt="JPEG")
            save_mask(tmp_path / "labels" / "sem_seg" / "masks" / "val" / f"{stem}.png", [0, 18, 255])
        else:
            save_image(tmp_path / "seg" / "images" / "val" / f"{stem}.jpg", fmt="JPEG")
            save_mask(tmp_path / "seg" / "labels" / "val" / f"{stem}_train_id.png", [0, 18, 255])
    ds = BDD100K(tmp_path, "val")
    assert len(ds) == 2 and ds.files[0][0].endswith("0a0a0b1a-7c39d841.jpg")
    assert ds.load(1)[1].ravel()[:3].tolist() == [0, 18, 255] and ds.num_classes == 19


# --------------------------------------------------------------------------- folder
def test_folder_dataset(tmp_path):
    (tmp_path / "classes.txt").write_text("# my classes\nbackground 0 0 0\ncrack 255 0 0\n")
    for split in ("train", "val"):
        save_image(tmp_path / "images" / split / "x1.jpg", fmt="JPEG")
        save_mask(tmp_path / "masks" / split / "x1.png", [0, 1, 255])
    ds = build_dataset({"dataset": "folder", "root": str(tmp_path)}, "train", train=False)
    assert ds.classes == ("background", "crack") and ds.palette == ((0, 0, 0), (255, 0, 0))
    assert ds.load(0)[1].ravel()[:3].tolist() == [0, 1, 255]
    with pytest.raises(DataError, match="split 'test' not found"):
        FolderDataset(tmp_path, "test")


def test_folder_flat_with_split_list(tmp_path):
    (tmp_path / "classes.txt").write_text("sky\nground\n")
    for stem in ("b", "a", "c"):
        save_image(tmp_path / "images" / f"{stem}.png")
        save_mask(tmp_path / "masks" / f"{stem}.png", [0, 1])
    (tmp_path / "val.txt").write_text("c\na.png\n")
    assert [f[0][-5:] for f in FolderDataset(tmp_path, "val").files] == ["a.png", "c.png"]
    assert len(FolderDataset(tmp_path, "all")) == 3
    assert len(FolderDataset(tmp_path, "all").palette) == 2
    grey = np.repeat(np.array([[0, 1], [1, 255]], np.uint8)[..., None], 3, axis=2)
    save_image(tmp_path / "images" / "d.png", size=(2, 2))
    Image.fromarray(grey).save(tmp_path / "masks" / "d.png")  # an index mask saved as grey RGB
    (tmp_path / "test.txt").write_text("d\n")
    assert FolderDataset(tmp_path, "test").load(0)[1].tolist() == [[0, 1], [1, 255]]


# --------------------------------------------------------------------------- bad data
def folder_tree(tmp_path, n=3):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    for k in range(n):
        save_image(tmp_path / "images" / "train" / f"s{k}.png", seed=k)
        save_mask(tmp_path / "masks" / "train" / f"s{k}.png", [0, 1, 2, 255])
    return tmp_path / "images" / "train", tmp_path / "masks" / "train"


def break_sample(images, masks, how):
    """Damage sample s1 in one way; returns the file the error must name."""
    image, mask = images / "s1.png", masks / "s1.png"
    if how == "truncated image":
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 2])
        return image
    if how == "unreadable image":
        image.write_bytes(b"not a picture")
        return image
    if how == "missing mask":
        mask.unlink()
        return mask
    if how == "size mismatch":
        save_mask(mask, [0], size=(W + 1, H))
        return mask
    if how == "invalid id":
        save_mask(mask, [0, 1, 7])
        return mask
    if how == "colour mask":
        Image.fromarray(np.random.default_rng(0).integers(0, 3, (H, W, 3), dtype=np.uint8)).save(mask)
        return mask
    raise AssertionError(how)


BAD = ["truncated image", "unreadable image", "missing mask", "size mismatch", "invalid id", "colour mask"]


@pytest.mark.parametrize("how", BAD)
def test_bad_data_error_names_the_file(tmp_path, how):
    images, masks = folder_tree(tmp_path)
    culprit = break_sample(images, masks, how)
    with pytest.raises(DataError, match=str(culprit).replace(".", r"\.")):
        ds = FolderDataset(tmp_path, "train")
        for k in range(len(ds)):
            ds[k]


@pytest.mark.parametrize("how", BAD)
def test_skip_bad_skips_and_counts(tmp_path, how):
    images, masks = folder_tree(tmp_path)
    culprit = break_sample(images, masks, how)
    with pytest.warns(UserWarning, match="skipped 1 bad sample"):
        ds = build_dataset({"dataset": "folder", "root": str(tmp_path), "skip_bad": True}, "train", train=True)
    assert len(ds) == 2 and len(ds.skipped) == 1 and str(culprit) in ds.skipped[0][1]
    assert [Path(image).name for image, _ in ds.files] == ["s0.png", "s2.png"]


def test_empty_split_names_the_folder(tmp_path):
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match=r"leftImg8bit/val.*empty"):
        Cityscapes(tmp_path, "val")
    with pytest.raises(DataError, match=r"leftImg8bit/test: folder is missing"):
        Cityscapes(tmp_path, "test")
    images, masks = folder_tree(tmp_path / "f", n=1)
    (images / "s0.png").write_bytes(b"broken")
    with warnings.catch_warnings(), pytest.raises(DataError, match="empty after skipping 1"):
        warnings.simplefilter("ignore")
        FolderDataset(tmp_path / "f", "train", skip_bad=True)


def test_sixteen_bit_masks(tmp_path):
    images, masks = folder_tree(tmp_path, n=1)
    Image.fromarray(np.resize(np.array([0, 2, 255], np.uint16), (H, W))).save(masks / "s0.png")
    ds = FolderDataset(tmp_path, "train")
    assert ds.load(0)[1].ravel()[:3].tolist() == [0, 2, 255]
    Image.fromarray(np.resize(np.array([0, 300], np.uint16), (H, W))).save(masks / "s0.png")
    with pytest.raises(DataError, match=r"s0\.png: mask values \[300\]"):
        ds.load(0)
