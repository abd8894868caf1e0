"""CamVid's sequences: sequence-held-out splits, trainval, their errors (on small generated trees),
the real copy's sequence counts, and the held-out and trainval recipes against camvid_cpu."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from atrous.data import CamVid, DataError, build_dataset
from atrous.data.camvid import camvid_sequence
from atrous.engine.config import load_config
from conftest import SHARED

CAMVID = SHARED / "data" / "camvid"

# A SegNet-layout tree in the real split pattern: val is one sequence that train shares.
TREE = {
    "train": ["0001TP_006690", "0001TP_006720", "0006R0_f00930", "0016E5_00390", "0016E5_00420"],
    "val": ["0016E5_07959", "0016E5_07961"],
    "test": ["0001TP_008550", "Seq05VD_f00000"],
}


def make_segnet_tree(root, tree=TREE):
    for part, stems in tree.items():
        for stem in stems:
            for folder, mode in ((part, "RGB"), (f"{part}annot", "L")):
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.new(mode, (8, 6), 3).save(root / folder / f"{stem}.png")
    return root


def test_sequences_of_each_split(tmp_path):
    root = make_segnet_tree(tmp_path)
    assert CamVid(root, "train").sequence_counts() == {"0001TP": 2, "0006R0": 1, "0016E5": 2}
    assert CamVid(root, "val").sequence_counts() == {"0016E5": 2}
    trainval = CamVid(root, "trainval")
    assert len(trainval) == 7 and trainval.files == CamVid(root, "train+val").files
    assert trainval.sequences == ["0001TP", "0001TP", "0006R0", "0016E5", "0016E5", "0016E5", "0016E5"]
    assert camvid_sequence("x/Seq05VD_f00000.png") == "Seq05VD" and camvid_sequence("seq05vd_1.png") is None


def test_holdout_keeps_whole_sequences_out(tmp_path):
    root = make_segnet_tree(tmp_path)
    spec = {"dataset": "camvid", "root": str(root), "holdout": ["0006R0"]}
    train = build_dataset(spec, "trainval", train=True)
    held = build_dataset(spec, "holdout", train=False)
    assert train.sequence_counts() == {"0001TP": 2, "0016E5": 4}
    assert held.sequences == ["0006R0"] and held.files[0][0].endswith("train/0006R0_f00930.png")
    assert not set(train.files) & set(held.files)
    # two sequences; the holdout split takes train and val frames, never test
    spec["holdout"] = ["0016E5", "0001TP"]
    assert build_dataset(spec, "holdout", train=False).sequence_counts() == {"0001TP": 2, "0016E5": 4}
    assert build_dataset(spec, "trainval", train=True).sequence_counts() == {"0006R0": 1}
    assert build_dataset(spec, "test", train=False).sequence_counts() == {"Seq05VD": 1}
    spec["holdout"] = "0006R0"  # a single name works as well as a list
    assert len(build_dataset(spec, "holdout", train=False)) == 1


@pytest.mark.parametrize("holdout, split, message", [
    (["0006R"], "train", r"data.holdout: '0006R' is not a CamVid sequence; expected some of 0001TP, 0006R0, "
                         r"0016E5, Seq05VD$"),
    ([1600000.0], "train", r"data.holdout: 1600000.0 is not a sequence name; write a list such as \[0016E5\]"),
    ([], "train", r"data.holdout: expected one or more of"),
    (["Seq05VD"], "holdout", r"camvid split 'holdout' with data.holdout \['Seq05VD'\] is empty \(its folders "
                             r"hold 2 0001TP, 1 0006R0, 4 0016E5\)$"),
    (["0016E5"], "val", r"camvid split 'val' with data.holdout \['0016E5'\] is empty"),
    (None, "holdout", r"camvid split 'holdout': set data.holdout"),
    (["0006R0"], "holdout+val", r"'holdout' is a split of its own"),
])
def test_holdout_errors_are_one_line(tmp_path, holdout, split, message):
    root = make_segnet_tree(tmp_path)
    spec = {"dataset": "camvid", "root": str(root), **({"holdout": holdout} if holdout is not None else {})}
    with pytest.raises(DataError, match=message) as caught:
        build_dataset(spec, split, train=False)
    assert "\n" not in str(caught.value)


def test_holdout_needs_sequence_names(tmp_path):
    root = make_segnet_tree(tmp_path, {"train": ["0006R0_f00930", "frame_0001"]})
    assert CamVid(root, "train").sequences == ["0006R0", None]  # fine without holdout
    with pytest.raises(DataError, match=r"frame_0001\.png: cannot tell its CamVid sequence"):
        CamVid(root, "train", holdout=["0006R0"])


def test_holdout_in_the_original_layout(tmp_path):
    (tmp_path / "class_dict.csv").write_text("name,r,g,b\nRoad,128,64,128\nVoid,0,0,0\n")
    for part, stem in (("train", "0001TP_006690"), ("train", "0006R0_f00930"), ("val", "0016E5_07959")):
        (tmp_path / part).mkdir(exist_ok=True)
        (tmp_path / f"{part}_labels").mkdir(exist_ok=True)
        Image.new("RGB", (4, 2)).save(tmp_path / part / f"{stem}.png")
        Image.fromarray(np.full((2, 4, 3), (128, 64, 128), np.uint8)).save(tmp_path / f"{part}_labels" / f"{stem}_L.png")
    held = CamVid(tmp_path, "holdout", holdout=["0001TP"])
    assert held.layout == "original" and held.sequences == ["0001TP"]
    assert held.load(0)[1].tolist() == [[3] * 4] * 2
    assert CamVid(tmp_path, "trainval", holdout=["0001TP"]).sequences == ["0006R0", "0016E5"]


# --------------------------------------------------------------------------- the real copy
@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"{CAMVID} is absent")
def test_real_camvid_sequences():
    """The counts docs/data.md and docs/results.md state (file listing only, no decoding)."""
    spec = {"dataset": "camvid", "root": str(CAMVID)}
    assert build_dataset(spec, "train", train=False).sequence_counts() == {"0001TP": 62, "0006R0": 101, "0016E5": 204}
    assert build_dataset(spec, "val", train=False).sequence_counts() == {"0016E5": 101}
    held = load_config("camvid_cpu_heldout", [f"data.root={CAMVID}"])
    train = build_dataset(held["data"], held["train"]["split"], train=True)
    val = build_dataset(held["data"], held["eval"]["split"], train=False)
    assert train.sequence_counts() == {"0001TP": 62, "0016E5": 305}
    assert val.sequence_counts() == {"0006R0": 101}
    trainval = load_config("camvid_cpu_trainval", [f"data.root={CAMVID}"])
    assert len(build_dataset(trainval["data"], trainval["train"]["split"], train=True)) == 468


# --------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("variant, differences", [
    ("camvid_cpu_heldout", {("data", "holdout"): ["0006R0"], ("train", "split"): "trainval",
                            ("eval", "split"): "holdout", ("loss", "class_weights"): "enet"}),
    ("camvid_cpu_trainval", {("train", "split"): "trainval", ("train", "eval_every"): None,
                             ("loss", "class_weights"): "enet"}),
])
def test_camvid_variants_keep_camvid_cpu_settings(variant, differences):
    """A change to camvid_cpu's hyper-parameters must reach its variants (or fail here)."""
    base, other = load_config("camvid_cpu"), load_config(variant)
    for (section, key), value in differences.items():
        assert other[section][key] == value
        if key in base[section]:
            other[section][key] = base[section][key]
        else:
            del other[section][key]
    assert other.pop("recipe") == variant and base.pop("recipe") == "camvid_cpu"
    assert other == base
