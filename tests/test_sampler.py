"""Class-uniform sampling: deterministic per epoch, classes share equally, absent classes are
fine, centres show their class, sharding covers the epoch, DataLoader workers don't matter."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from atrous.data import ClassUniformSampler, FolderDataset, SampleRequest, build_dataset, build_sampler

TOY = {"dataset": "toy", "size": 32, "widths": [2, 4], "count": 12, "num_classes": 4, "seed": 1,
       "transforms": {"train": {"crop": [16, 16], "hflip": 0.5}}}


@pytest.fixture(scope="module")
def toy():
    return build_dataset(TOY, "train", train=True)


def test_epochs_are_deterministic_and_differ(toy):
    a = ClassUniformSampler(toy, percent=0.5, seed=3, progress=False)
    b = ClassUniformSampler(toy, percent=0.5, seed=3, progress=False)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)
    assert list(ClassUniformSampler(toy, 0.5, seed=4, progress=False)) != list(ClassUniformSampler(toy, 0.5, seed=3, progress=False))


def test_share_and_centres(toy):
    sampler = ClassUniformSampler(toy, percent=0.5, num_samples=40, seed=0, progress=False)
    requests = list(sampler)
    assert len(requests) == 40 == len(sampler)
    uniform = [r for r in requests if r.class_id is not None]
    assert len(uniform) == 20
    per_class = np.bincount([r.class_id for r in uniform], minlength=4)
    assert per_class.max() - per_class.min() <= 1
    for r in uniform:
        assert toy.load_mask(r.index)[r.center] == r.class_id
    assert len({r.seed for r in requests}) == 40


def test_percent_zero_is_a_seeded_shuffle_of_every_image(toy):
    requests = list(ClassUniformSampler(toy, percent=0.0, seed=0))
    assert sorted(r.index for r in requests) == list(range(len(toy)))
    assert all(r.class_id is None for r in requests)


def test_absent_classes_do_not_crash(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\nnever\nd\n")
    for k in range(4):
        (tmp_path / "images" / "train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "masks" / "train").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "train" / f"{k}.png")
        mask = np.zeros((8, 8), np.uint8)
        mask[:4] = 1 if k % 2 else 3
        mask[7] = 255
        Image.fromarray(mask).save(tmp_path / "masks" / "train" / f"{k}.png")
    ds = FolderDataset(tmp_path, "train")
    with pytest.warns(UserWarning, match=r"classes \[2\] never occur"):
        sampler = ClassUniformSampler(ds, percent=1.0, num_samples=30, seed=0)
    requests = list(sampler)
    assert {r.class_id for r in requests} == {0, 1, 3}
    assert ds.class_presence().counts[:, 2].sum() == 0
    assert ds.class_presence().counts[1].tolist() == [24, 32, 0, 0]


def test_sharding_covers_the_epoch(toy):
    full = ClassUniformSampler(toy, percent=0.5, num_samples=10, seed=2, progress=False)
    global_list = full.epoch_requests()
    shards = [list(ClassUniformSampler(toy, 0.5, num_samples=10, seed=2, num_replicas=3, rank=r,
                                       progress=False)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    merged = [shards[k % 3][k // 3] for k in range(12)]
    assert merged == global_list + global_list[:2]


def test_dataloader_workers_do_not_change_batches(toy):
    sampler = build_sampler({**TOY, "class_uniform": 0.5}, toy, seed=0)

    def batches(workers):
        loader = DataLoader(toy, batch_size=4, sampler=sampler, num_workers=workers)
        return [b for b in loader]

    single, multi = batches(0), batches(2)
    assert len(single) == 3 and single[0][0].shape == (4, 3, 16, 16)
    for (xa, ya), (xb, yb) in zip(single, multi):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_request_round_trip(toy):
    request = SampleRequest(3, seed=11, class_id=None, center=None)
    a, b = toy[request], toy[request]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="percent"):
        ClassUniformSampler(toy, percent=1.5)


def test_class_presence_disk_cache(tmp_path, monkeypatch):
    import atrous.data.sampler as sampler_module

    first = build_dataset(TOY, "train", train=True).class_presence(progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("class_presence-toy-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(sampler_module, "compute_class_presence", fail)
    again = build_dataset(TOY, "train", train=True).class_presence(progress=False, cache_dir=tmp_path)
    assert np.array_equal(first.counts, again.counts)
    assert all(np.array_equal(a, b) for a, b in zip(first.centers, again.centers))
    with pytest.raises(AssertionError, match="recomputed"):  # other data, other key
        build_dataset({**TOY, "seed": 9}, "train", train=True).class_presence(progress=False, cache_dir=tmp_path)


def test_image_centers_are_class_pixels_even_for_tiny_objects():
    from atrous.data.sampler import image_centers

    mask = np.zeros((50, 70), np.int64)
    mask[:, 40:] = 1
    mask[:, 20:24] = 2  # a thin pole
    mask[0, 10:14] = 1  # a second part of class 1, far away
    mask[33, 33] = 3  # one pixel, off the 4-pixel grid
    mask[10, 10] = 255
    centers = image_centers(mask, 5, tile_size=32)
    for c, points in centers.items():
        assert all(mask[y, x] == c for y, x in points), c
    assert sorted(centers) == [0, 1, 2, 3] and len(centers[3]) == 1
    # one centre per tile where the class occurs: class 0 lies in 4 of the 6 tiles of 32x32
    assert len(centers[0]) == 4 and len(image_centers(mask, 5, tile_size=1024)[0]) == 1


def test_class_presence_does_not_depend_on_threads(toy):
    from atrous.data.sampler import compute_class_presence

    a = compute_class_presence(toy, progress=False, workers=1, tile_size=8)
    b = compute_class_presence(toy, progress=False, workers=3, tile_size=8)
    assert np.array_equal(a.counts, b.counts) and a.counts.sum() == 12 * 32 * 32
    assert all(np.array_equal(x, y) for x, y in zip(a.centers, b.centers))
