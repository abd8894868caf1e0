"""Encoder pretraining on an image folder and encoder initialisation: the authors' ImageNet files,
atrous' own pretraining output, and precise BatchNorm statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import atrous
from atrous.cli import main
from atrous.engine.precise_bn import recompute_batchnorm
from atrous.engine.trainer import init_weights
from atrous.models.classifier import EncoderClassifier

from conftest import zeros_from_keys

TINY = {"stem_width": 8, "widths": [8, 16, 16, 16], "depths": [1, 1], "group_width": 8, "dilations": [[1], [1, 2]],
        "decoder_widths": [16, 8, 16]}


def image_folder(root, classes=3, per_class=4, size=40):
    """root/{train,val}/cK/*.png: each class its own dominant colour, noise on top."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k in range(classes):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 60, (size, size, 3))
                pixels[..., k % 3] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("name", ["regseg", "dwrseg_base", "fassdnet", "dsnet"])
def test_the_classifier_holds_exactly_the_encoder(name):
    segmentation = atrous.create_model(name)
    encoder = {k for k in segmentation.state_dict() if k.startswith(segmentation.parts["encoder"])}
    classifier = EncoderClassifier(name, num_classes=5)
    assert set(classifier.state_dict()) - encoder == {"classifier_head.weight", "classifier_head.bias"}
    assert encoder <= set(classifier.state_dict())
    assert classifier.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_pretrain_then_initialise_the_encoder(tmp_path, capsys):
    data = image_folder(tmp_path / "images")
    recipe = tmp_path / "pretrain.yaml"
    recipe.write_text("# Source: test recipe (DSNet Sec 3.2: ImageNet pretraining of the backbone)\n" + yaml.safe_dump({
        "task": "classification", "model": {"name": "regseg", "options": TINY},
        "data": {"dataset": "imagefolder", "root": str(data),
                 "transforms": {"train": {"crop": 32}, "val": {"resize": 36, "crop": 32}}},
        "train": {"batch_size": 4, "max_iters": 3, "checkpoint_every": 3, "log_every": 1, "lr": 0.05},
        "eval": {"batch_size": 4}}))
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out)]) == 0
    assert "top-1 accuracy" in capsys.readouterr().out
    pretrained = atrous.load(out / "model.safetensors")
    assert pretrained.record.task == "classification" and pretrained.record.classes == ("c0", "c1", "c2")
    assert 0 <= pretrained.record.provenance["metrics"]["val"]["top1"] <= 1
    segmentation = atrous.create_model("regseg", num_classes=11, **TINY)
    report = init_weights(segmentation, {"path": str(out / "model.safetensors"), "part": "encoder"})
    assert report.complete and len(report.loaded) == report.expected
    assert "loaded 135 of 135 encoder tensors of regseg" in report.summary()
    theirs = pretrained.state_dict()
    for key in report.loaded:
        assert torch.equal(segmentation.state_dict()[key], theirs[key]), key
    # the deploy commands refuse a pretraining file, saying how to use it
    assert main(["predict", str(out / "model.safetensors"), str(data / "val"), "--out", str(tmp_path / "p")]) == 2
    assert "part: encoder" in capsys.readouterr().err


def test_a_bad_image_in_the_folder_is_named(tmp_path):
    from atrous.data import build_dataset

    data = image_folder(tmp_path / "images", classes=2, per_class=2)
    (data / "train" / "c1" / "broken.png").write_bytes(b"not a png")
    spec = {"dataset": "imagefolder", "root": str(data)}
    dataset = build_dataset(spec, "train", train=True)
    bad = next(i for i, (path, _) in enumerate(dataset.files) if path.endswith("broken.png"))
    with pytest.raises(ValueError, match="broken.png"):
        dataset[bad]
    with pytest.warns(UserWarning, match="skipped 1 bad image"):
        assert len(build_dataset({**spec, "skip_bad": True}, "train", train=True)) == 4


def test_the_authors_imagenet_files_initialise_the_encoder(tmp_path):
    # FASSD-Net: HarDNet-68's imagenet_weights.pth names the keys without "base.", plus its fc head
    hardnet = {k[len("base."):]: torch.randn(v.shape) if v.is_floating_point() else v
               for k, v in zeros_from_keys("fassdnet").items() if k.startswith("base.")}
    hardnet["16.weight"] = torch.randn(1000, 1024)
    torch.save(hardnet, tmp_path / "imagenet_weights.pth")
    model = atrous.create_model("fassdnet")
    report = init_weights(model, {"path": str(tmp_path / "imagenet_weights.pth"), "part": "encoder"})
    assert report.complete and len(report.loaded) == 192
    assert torch.equal(model.state_dict()["stem.0.conv.weight"], hardnet["0.conv.weight"])
    # DSNet: {'state_dict': ...} with module. and the segmentation model's official names
    official = {f"module.{k}": torch.randn(v.shape) if v.is_floating_point() else v
                for k, v in zeros_from_keys("dsnet_head128").items() if not k.startswith(("lastlayer", "seghead"))}
    official["module.fc.weight"] = torch.randn(1000, 1024)
    torch.save({"state_dict": official, "epoch": 90}, tmp_path / "dsnet_imagenet.pth")
    model = atrous.create_model("dsnet", num_classes=7)
    report = init_weights(model, {"path": str(tmp_path / "dsnet_imagenet.pth"), "part": "encoder"})
    assert report.complete and len(report.loaded) == 536
    assert torch.equal(model.state_dict()["stem.0.conv.weight"], official["module.conv1.0.weight"])
    with pytest.raises(ValueError, match="part: encoder"):  # the whole model cannot come from it
        init_weights(atrous.create_model("dsnet", num_classes=7), str(tmp_path / "dsnet_imagenet.pth"))


def test_precise_batchnorm_averages_the_batch_statistics():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).eval()
    batches = [(torch.randn(2, 3, 5, 5) * (k + 1) + k, None) for k in range(3)]
    weights = model[0].weight.clone()
    assert recompute_batchnorm(model, iter(batches), 3, "cpu") == 3
    with torch.no_grad():
        features = [model[0](x) for x, _ in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean)
    torch.testing.assert_close(model[1].running_var, var)
    assert not model.training and model[1].momentum == 0.1 and torch.equal(model[0].weight, weights)
