"""Joint transforms: the mask follows the image, padding is ignore, a seed fixes everything;
RegSeg's reduced RandAug; class-uniform crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.data import IMAGENET_MEAN, IMAGENET_STD, RandAugment, build_transforms
from atrous.data.transforms import resize_mask_nearest

COLOURS = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0]], np.uint8)


def blocks(h=48, w=64, block=8, seed=0):
    """A mask of class blocks and an image whose colour spells the class of every pixel."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, len(COLOURS), (h // block, w // block))
    mask = np.kron(small, np.ones((block, block), np.int64))
    return Image.fromarray(COLOURS[mask]), mask


def denormalize(x):
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((x * std + mean) * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def agreement(x, y):
    """Among labelled pixels whose colour is a pure class colour (within 8 levels; bilinear seams
    are not), the share whose mask holds that class."""
    image, mask = denormalize(x).astype(int), y.numpy()
    dist = np.abs(image[:, :, None, :] - COLOURS[None, None].astype(int)).max(-1)
    pure = (dist.min(-1) <= 8) & (mask != 255)
    return (dist.argmin(-1)[pure] == mask[pure]).mean(), mask != 255


def run(cfg, image, mask, seed, train=True, center=None):
    return build_transforms(cfg, train)(image, mask, rng=np.random.default_rng(seed), center=center)


def test_flip_and_crop_move_the_mask_exactly():
    image, mask = blocks()
    for seed in range(6):
        x, y = run({"crop": [40, 24], "hflip": 0.5}, image, mask, seed)
        assert x.shape == (3, 40, 24) and y.shape == (40, 24)
        share, valid = agreement(x, y)
        assert valid.all() and share == 1.0


def test_scale_crop_flip_keep_image_and_mask_aligned():
    image, mask = blocks()
    cfg = {"scale": {"factor": [0.5, 2.0]}, "crop": [64, 64], "hflip": 0.5}
    for seed in range(6):
        x, y = run(cfg, image, mask, seed)
        share, _ = agreement(x, y)
        assert share > 0.99, seed
        assert agreement(x, torch.roll(y, 3, 1))[0] < 0.98  # a 3-pixel shift is caught


def test_crop_pads_with_ignore_and_mean_at_a_random_place():
    image, mask = blocks(h=16, w=16)
    corners = set()
    for seed in range(8):
        x, y = run({"crop": [24, 32]}, image, mask, seed)
        rows, cols = np.nonzero(y.numpy() != 255)
        top, left = rows.min(), cols.min()
        corners.add((int(top), int(left)))
        assert len(rows) == 256 and rows.max() - top == 15 and cols.max() - left == 15
        assert torch.equal(y[top:top + 16, left:left + 16], torch.from_numpy(mask))
        padded = torch.from_numpy(y.numpy() == 255)
        assert x[:, padded].abs().max() < 0.02  # mean colour -> ~0 after normalisation
    assert len(corners) > 1


def test_shorter_side_scale_and_eval_resize():
    image, mask = blocks(h=48, w=64)
    x, y = run({"scale": {"shorter_side": [96, 96]}}, image, mask, 0)
    assert x.shape == (3, 96, 128) and y.shape == (96, 128)
    x, y = run({"scale": [96, 96]}, image, mask, 0)  # bare list >= 16: shorter side
    assert x.shape == (3, 96, 128)
    x, y = run({"resize": 24}, image, mask, 0, train=False)
    assert x.shape == (3, 24, 32) and torch.equal(y, torch.from_numpy(mask))  # label kept for scoring
    x, y = run({"resize": 24, "resize_mask": True}, image, mask, 0, train=False)
    assert y.shape == (24, 32)


def test_seed_determines_every_augmentation():
    image, mask = blocks()
    cfg = {"scale": {"factor": [0.5, 2.0]}, "crop": [32, 32], "hflip": 0.5,
           "randaug": {"num_ops": 2, "magnitude": 0.2}, "color_jitter": {"brightness": 0.3, "hue": 0.1}}
    a, b, c = run(cfg, image, mask, 7), run(cfg, image, mask, 7), run(cfg, image, mask, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(3)
    d = build_transforms(cfg, True)(image, mask)
    torch.manual_seed(3)
    e = build_transforms(cfg, True)(image, mask)
    assert torch.equal(d[0], e[0])  # without a seed, torch's generator decides


def test_unknown_transform_keys_are_named():
    with pytest.raises(ValueError, match="'crop' is unknown for evaluation"):
        build_transforms({"crop": [8, 8]}, train=False)
    with pytest.raises(ValueError, match="randaug.strength"):
        build_transforms({"randaug": {"strength": 1}}, train=True)
    with pytest.raises(ValueError, match="expected a subset"):
        build_transforms({"randaug": {"ops": ["invert"]}}, train=True)


def test_randaug_rotation_moves_the_mask_with_ignore_fill():
    image, mask = blocks(h=64, w=64, block=16)
    aug = RandAugment(num_ops=1, magnitude=1.0, ops=["rotate"])
    out_image, out_mask = aug(image, mask, np.random.default_rng(0))
    assert out_mask.shape == mask.shape and (out_mask[0, 0] == 255) and (out_mask[32, 32] != 255)
    assert (out_mask != mask).mean() > 0.05
    x = torch.from_numpy(np.array(out_image)).permute(2, 0, 1) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    assert agreement(x, torch.from_numpy(out_mask))[0] > 0.99


def test_randaug_photometric_ops_leave_the_mask():
    image, mask = blocks()
    aug = RandAugment(num_ops=4, magnitude=1.0, ops=["color", "contrast", "brightness", "sharpness"])
    out_image, out_mask = aug(image, mask, np.random.default_rng(1))
    assert out_mask is mask and not np.array_equal(np.asarray(out_image), np.asarray(image))
    counts = [0] * 7
    reduced = RandAugment()
    for seed in range(70):
        rng = np.random.default_rng(seed)
        for k in rng.choice(7, size=2, replace=False):
            counts[int(k)] += 1
    assert reduced.num_ops == 2 and reduced.magnitude == 0.2 and min(counts) > 0


def test_class_uniform_center_is_inside_the_crop():
    mask = np.zeros((200, 300), np.int64)
    mask[190:196, 5:9] = 3  # a small object in a corner
    image = Image.fromarray(COLOURS[mask])
    cfg = {"scale": {"factor": [0.5, 1.5]}, "crop": [64, 64], "hflip": 0.5}
    for seed in range(20):
        _, y = run(cfg, image, mask, seed, center=(192, 6))
        assert (y == 3).any(), seed
    hits = sum(bool((run(cfg, image, mask, s)[1] == 3).any()) for s in range(20))
    assert hits < 20  # a plain random crop misses it most of the time


def test_nearest_mask_resize_keeps_ids():
    mask = np.arange(12).reshape(3, 4)
    assert resize_mask_nearest(mask, 6, 8)[::2, ::2].tolist() == mask.tolist()
    assert set(np.unique(resize_mask_nearest(mask, 5, 7))) <= set(range(12))


def test_bad_transform_values_are_named():
    with pytest.raises(ValueError, match="'hflip'"):
        build_transforms({"hflip": True}, train=True)  # a probability, not a switch
    with pytest.raises(ValueError, match="'crop'"):
        build_transforms({"crop": 512}, train=True)
    with pytest.raises(ValueError, match="color_jitter.brightness"):
        build_transforms({"color_jitter": {"brightness": -0.2}}, train=True)
    with pytest.raises(ValueError, match="scale"):
        build_transforms({"scale": [2.0, 0.5]}, train=True)


def test_randaug_magnitudes_follow_regseg():
    """m = 0.2: brightness factor 1 +- 0.18, rotation +-6 degrees (RegSeg augment.py ranges)."""
    from atrous.data.randaug import apply_op

    flat = Image.fromarray(np.full((8, 8, 3), 100, np.uint8))
    seen = set()
    for seed in range(8):
        out, _ = apply_op("brightness", flat, None, 0.2, np.random.default_rng(seed), (0, 0, 0), 255)
        seen.add(int(np.asarray(out)[0, 0, 0]))
    assert len(seen) == 2 and abs(min(seen) - 82) <= 1 and abs(max(seen) - 118) <= 1  # PIL truncates
    bar = np.zeros((41, 41), np.int64)
    bar[20, :] = 1  # a horizontal line through the centre
    _, rotated = apply_op("rotate", Image.new("RGB", (41, 41)), bar, 0.2, np.random.default_rng(0),
                          (0, 0, 0), 255)
    ys, xs = np.nonzero(rotated == 1)
    slope = np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0]))
    assert abs(abs(slope) - 6.0) < 1.0


def test_preview_grid_draws_image_and_mask(tmp_path):
    from atrous.data import build_dataset
    from atrous.data.preview import save_preview

    ds = build_dataset({"dataset": "toy", "size": 32, "widths": [4], "count": 3,
                        "transforms": {"train": {"crop": [32, 32]}}}, "train", train=True)
    save_preview(ds, [0, 1, 2], tmp_path / "p.png", columns=2)
    grid = np.asarray(Image.open(tmp_path / "p.png"))
    assert grid.shape == (32 * 2 + 4, (32 * 2 + 4) * 2 + 4, 3)
    image, mask = ds.load(0)
    assert np.abs(grid[:32, :32].astype(int) - np.asarray(image).astype(int)).max() <= 1


@pytest.mark.parametrize("cfg", [{"factor": [1.2, 2.0]}, {"factor": [0.3, 0.6]}, {"shorter_side": [40, 120]}])
def test_scale_then_crop_equals_the_two_steps(cfg):
    from atrous.data.transforms import RandomCrop, RandomScale, ScaleThenCrop

    _, mask = blocks(h=48, w=64, block=4, seed=3)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    scale, crop = RandomScale(**cfg), RandomCrop([40, 56], fill=(1, 2, 3))
    for seed in range(5):
        for center in (None, (30, 9)):
            rng = np.random.default_rng(seed)
            step_img, step_mask, step_c = scale(image, mask, rng, center)
            a_img, a_mask, a_c = crop(step_img, step_mask, rng, step_c)
            b_img, b_mask, b_c = ScaleThenCrop(scale, crop)(image, mask, np.random.default_rng(seed), center)
            assert np.array_equal(a_mask, b_mask) and a_c == b_c
            diff = np.abs(np.asarray(a_img).astype(int) - np.asarray(b_img).astype(int))
            assert diff.max() <= 2


def test_color_jitter_changes_colours_only():
    image, mask = blocks()
    cfg = {"color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}}
    x, y = run(cfg, image, mask, 0)
    plain, _ = run({}, image, mask, 0)
    assert torch.equal(y, torch.from_numpy(mask)) and not torch.allclose(x, plain)
    x_off, _ = run({"color_jitter": {"brightness": 0.4, "prob": 0.0}}, image, mask, 0)
    assert torch.equal(x_off, plain)
