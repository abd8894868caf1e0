"""Engine pieces on hand-made tensors: recipes and overrides, the three OHEM forms, the schedule,
weight-decay groups, EMA, atomic checkpoints, class-count-changing loads, evaluation numbers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from atrous.engine import checkpoint as ckpt
from atrous.engine.config import DEFAULTS, list_recipes, load_config
from atrous.engine.ema import EMA
from atrous.engine.evaluate import confusion_matrix, evaluate, metrics_from_confusion, predict
from atrous.engine.losses import Bootstrap, CrossEntropy, DSNetOHEM, RegSegOHEM, SegLoss, loss_from_config
from atrous.engine.optim import param_groups
from atrous.engine.schedule import lr_factor
from atrous.models import create_model


def logits_for_losses(losses: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    """Two-class logits (N x 2 x H x W) whose cross-entropy at target 0 is exactly ``losses``:
    CE = log(1 + exp(z1 - z0)), so z1 = log(exp(loss) - 1) with z0 = 0."""
    z1 = torch.log(torch.expm1(losses.double())).float()
    return torch.stack([torch.zeros_like(z1), z1], dim=1)


# --------------------------------------------------------------------------- config
def test_bundled_recipes_load_and_name_their_source():
    names = list_recipes()
    for required in ("toy", "camvid_cpu", "regseg_cityscapes", "regseg_camvid", "dsnet_cityscapes",
                     "dsnet_ade20k", "dsnet_bdd100k", "dwrseg_cityscapes", "dwrseg_camvid", "fassdnet_cityscapes"):
        assert required in names
    from atrous.engine.config import RECIPES

    for name in names:
        config = load_config(name)
        assert set(config) == set(DEFAULTS)
        first = (RECIPES / f"{name}.yaml").read_text().splitlines()[0]
        assert first.startswith("# Source:") and "Sec" in first, name


def test_overrides_are_typed_and_deep():
    config = load_config("toy", ["train.max_iters=40", "train.lr=1e-3", "train.ema.enabled=true",
                                 "data.size=[64, 96]", "model.options.group_width=4", "eval.shorter_side=null"])
    assert config["train"]["max_iters"] == 40 and config["train"]["lr"] == 1e-3
    assert config["train"]["ema"] == {"enabled": True, "alpha": 0.0031, "every": 32}  # other keys kept
    assert config["data"]["size"] == [64, 96] and config["data"]["dataset"] == "toy"
    assert config["model"]["options"]["group_width"] == 4 and config["model"]["options"]["stem_width"] == 16


@pytest.mark.parametrize("override, key", [("train.max_iter=5", "train.max_iter"), ("trian.lr=1", "trian"),
                                           ("train.ema.alfa=0.1", "train.ema.alfa")])
def test_unknown_keys_are_errors_that_name_the_key(override, key):
    with pytest.raises(KeyError, match=key.replace(".", r"\.")):
        load_config("toy", [override])


def test_unknown_key_in_a_recipe_file_names_file_and_key(tmp_path, monkeypatch):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  max_iters: 3\n  bacth_size: 2\n")
    with pytest.raises(KeyError, match=r"r\.yaml.*train\.bacth_size"):
        load_config(path)
    (tmp_path / "toy").mkdir()  # a run folder named like a recipe does not hide the recipe
    monkeypatch.chdir(tmp_path)
    assert load_config("toy")["data"]["dataset"] == "toy"
    with pytest.raises(FileNotFoundError, match="no_such_recipe"):
        load_config("no_such_recipe")
    with pytest.raises(ValueError, match="expected key=value"):
        load_config("toy", ["train.lr"])


# --------------------------------------------------------------------------- losses
def test_cross_entropy_ignores_pixels():
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0] = 255
    keep = target != 255
    manual = -logits.log_softmax(1).gather(1, target.clamp(max=2).unsqueeze(1))[:, 0][keep].mean()
    assert torch.allclose(CrossEntropy(255)(logits, target), manual)
    assert CrossEntropy(255)(logits, torch.full_like(target, 255)) == 0


def test_regseg_ohem_mean_over_threshold_else_top_sixteenth():
    # 32 pixels; 1/16 -> k = 2. Five losses above 0.3 (> k): their mean.
    losses = torch.full((1, 4, 8), 0.1)
    hard = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9])
    losses.view(-1)[:5] = hard
    target = torch.zeros(1, 4, 8, dtype=torch.long)
    got = RegSegOHEM(255, 0.3, 1 / 16)(logits_for_losses(losses), target)
    assert torch.isclose(got, hard.mean(), atol=1e-5)
    # Only one loss above 0.3 (< k = 2): the mean of the top 2 instead.
    losses = torch.full((1, 4, 8), 0.1)
    losses.view(-1)[3] = 0.9
    losses.view(-1)[7] = 0.2
    got = RegSegOHEM(255, 0.3, 1 / 16)(logits_for_losses(losses), target)
    assert torch.isclose(got, torch.tensor((0.9 + 0.2) / 2), atol=1e-5)


def test_dsnet_ohem_probability_threshold_and_min_kept():
    # p(true class) = exp(-loss). Losses 0.01 -> p 0.99 (easy), 0.5 -> p 0.61 (hard).
    losses = torch.tensor([[[0.01, 0.01, 0.01, 0.5, 0.7, 0.01]]])
    target = torch.zeros(1, 1, 6, dtype=torch.long)
    logits = logits_for_losses(losses)
    # min_kept 1: cut = max(0.9, p[1]) = 0.9 -> the two hard pixels.
    assert torch.isclose(DSNetOHEM(255, 0.9, 1)(logits, target), torch.tensor(0.6), atol=1e-5)
    # min_kept 4: cut = p sorted[4] = 0.99 (an easy pixel) -> pixels strictly below it: still 2 hard.
    # Make the easy ones differ so min_kept bites: the 3 least confident are kept.
    losses = torch.tensor([[[0.01, 0.02, 0.03, 0.5, 0.7, 0.04]]])
    got = DSNetOHEM(255, 0.9, 3)(logits_for_losses(losses), target)
    assert torch.isclose(got, torch.tensor((0.5 + 0.7 + 0.04) / 3), atol=1e-5)
    # ignored pixels are never counted
    target[0, 0, 4] = 255
    got = DSNetOHEM(255, 0.9, 1)(logits_for_losses(losses), target)
    assert torch.isclose(got, torch.tensor(0.5), atol=1e-5)


def test_fassdnet_bootstrap_is_per_image():
    # image 0: 3 losses above 0.3 with min_kept 2 -> their mean; image 1: none above -> top 2.
    losses = torch.tensor([[[0.4, 0.5, 0.6, 0.1]], [[0.2, 0.1, 0.05, 0.25]]])
    target = torch.zeros(2, 1, 4, dtype=torch.long)
    got = Bootstrap(255, 0.3, 2)(logits_for_losses(losses), target)
    expected = (torch.tensor([0.4, 0.5, 0.6]).mean() + torch.tensor([0.25, 0.2]).mean()) / 2
    assert torch.isclose(got, expected, atol=1e-5)


def test_aux_weights_and_main_weight():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    main = logits_for_losses(torch.full((1, 2, 2), 0.5))
    aux = logits_for_losses(torch.full((1, 2, 2), 2.0))
    loss = SegLoss(CrossEntropy(), [0.4])
    assert torch.isclose(loss((main, aux), target), torch.tensor(0.5 + 0.4 * 2.0), atol=1e-5)
    from atrous.engine.settings import LossSettings

    cfg = LossSettings(name="ohem_dsnet", main_weight=0.6, aux_weights=[0.2, 0.2], aux_loss="ce")
    dsnet = loss_from_config(cfg)
    assert isinstance(dsnet.aux_criterion, CrossEntropy) and isinstance(dsnet.criterion, DSNetOHEM)
    with pytest.raises(ValueError, match="aux_weights"):
        loss((main, aux, aux), target)


# --------------------------------------------------------------------------- schedule, optimizer
def test_poly_schedule_with_linear_warmup():
    assert lr_factor(0, 100) == 1.0
    assert math.isclose(lr_factor(50, 100), 0.5 ** 0.9)
    assert lr_factor(100, 100) == 0.0
    assert math.isclose(lr_factor(0, 1000, warmup_iters=10), 0.1)  # warmup starts at 0.1 lr
    assert math.isclose(lr_factor(5, 1000, warmup_iters=10), (0.1 + 0.9 * 0.5) * (1 - 5 / 1000) ** 0.9)
    assert math.isclose(lr_factor(10, 1000, warmup_iters=10), (1 - 10 / 1000) ** 0.9)
    with pytest.raises(ValueError):
        lr_factor(101, 100)


def test_no_weight_decay_on_batchnorm_and_optionally_biases():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    groups = param_groups(model, 1e-4)
    decay, no_decay = ({id(p) for p in g["params"]} for g in groups)
    assert decay == {id(model[0].weight), id(model[0].bias), id(model[2].weight), id(model[2].bias)}
    assert no_decay == {id(model[1].weight), id(model[1].bias)}
    assert groups[1]["weight_decay"] == 0.0
    groups = param_groups(model, 1e-4, decay_bias=False)
    assert {id(p) for p in groups[0]["params"]} == {id(model[0].weight), id(model[2].weight)}
    groups = param_groups(model, 1e-4, decay_bn=True)
    assert len(groups) == 1 and len(groups[0]["params"]) == 6


def test_ema_every_n_steps():
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    ema = EMA(model, alpha=0.25, every=2)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(4.0)
        model[1].num_batches_tracked.fill_(7)
    assert not ema.update(model, 1)
    assert torch.equal(ema.module[0].weight, start)
    assert ema.update(model, 2)
    assert torch.allclose(ema.module[0].weight, start + 0.25 * 4.0)
    assert int(ema.module[1].num_batches_tracked) == 7


# --------------------------------------------------------------------------- checkpoints, weights
def test_checkpoint_is_atomic_and_keeps_rng(tmp_path, monkeypatch):
    state = {"iteration": 3, "rng": ckpt.rng_state()}
    path = ckpt.save_checkpoint(tmp_path / "iter_0000003.pt", state)
    first = torch.rand(3)
    ckpt.set_rng_state(ckpt.load_checkpoint(path)["rng"])
    assert torch.equal(torch.rand(3), first)

    def broken_save(obj, f):
        open(f, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, {"iteration": 4})
    assert ckpt.load_checkpoint(path)["iteration"] == 3  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["iter_0000003.pt"]  # no temp file left
    # a temp file left by SIGKILL mid-write is never taken for a checkpoint, and is cleaned up
    (tmp_path / ".tmp-x1iter_0000009.pt").write_bytes(b"partial")
    assert ckpt.latest_checkpoint(tmp_path) == path
    assert [p.name for p in ckpt.remove_partial_files(tmp_path)] == [".tmp-x1iter_0000009.pt"]


def test_model_init_with_another_number_of_classes(tmp_path):
    from atrous.engine.trainer import init_weights
    from atrous.weights import default_record, save_weights

    options = dict(stem_width=8, widths=(8, 16, 16, 16), depths=(1, 1), group_width=8,
                   dilations=[[1], [1, 2]], decoder_widths=(16, 8, 16))
    source = create_model("regseg", num_classes=19, **options)
    path = save_weights(tmp_path / "city.safetensors", source, default_record(source))
    target = create_model("regseg", num_classes=11, **options)
    report = init_weights(target, str(path))
    assert sorted(k for k, _, _ in report.misshaped) == ["decoder.classifier.bias", "decoder.classifier.weight"]
    assert "loaded" in report.summary() and "decoder.classifier" in report.summary()
    assert torch.equal(target.backbone.stem.conv.weight, source.backbone.stem.conv.weight)
    assert target.decoder.classifier.weight.shape[0] == 11
    with pytest.raises(ValueError, match="city.safetensors"):  # another architecture: refused
        init_weights(create_model("regseg", num_classes=11), str(path))


def test_weights_file_bytes_are_reproducible(tmp_path):
    from atrous.weights import safetensors_bytes

    model = nn.Linear(3, 2)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    meta = {"b": 1, "a": "x", "c": 3, "d": 4, "e": 5}
    assert safetensors_bytes(state, meta) == safetensors_bytes(state, dict(reversed(list(meta.items()))))


# --------------------------------------------------------------------------- evaluation
def test_metrics_on_a_hand_made_confusion_matrix():
    # rows = ground truth, columns = prediction
    conf = torch.tensor([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    result = metrics_from_confusion(conf, ["a", "b", "c"])
    assert result["per_class_iou"]["a"] == pytest.approx(3 / 4)  # tp 3 / (gt 4 + pred 3 - 3)
    assert result["per_class_iou"]["b"] == pytest.approx(2 / 5)  # 2 / (4 + 3 - 2)
    assert result["per_class_iou"]["c"] == 0.0  # predicted twice, never present
    assert result["miou"] == pytest.approx((3 / 4 + 2 / 5 + 0) / 3)
    assert result["pixel_accuracy"] == pytest.approx(5 / 8)
    absent = metrics_from_confusion(torch.tensor([[2, 0], [0, 0]]))
    assert absent["per_class_iou"]["1"] is None and absent["miou"] == 1.0


def test_confusion_matrix_skips_ignore_and_rejects_bad_ids():
    target = torch.tensor([[0, 1, 255], [2, 2, 1]])
    pred = torch.tensor([[0, 2, 1], [2, 0, 1]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    with pytest.raises(ValueError, match="labels outside"):
        confusion_matrix(pred, torch.tensor([[0, 7, 1], [0, 0, 0]]), 3)


def test_shorter_side_resize_predicts_at_label_size():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return torch.stack([x[:, 0], -x[:, 0]], dim=1)  # class 0 where channel 0 > 0

    image = torch.ones(1, 3, 40, 60)
    image[..., :20, :] = -1
    pred = predict(Probe(), image, (40, 60), shorter_side=20)
    assert seen == [(20, 30)] and pred.shape == (1, 40, 60)
    assert (pred[0, :18] == 1).all() and (pred[0, 22:] == 0).all()


def test_evaluate_a_perfect_and_a_constant_model():
    class Data(torch.utils.data.Dataset):
        classes, num_classes, ignore_index = ("a", "b"), 2, 255

        def __len__(self):
            return 2

        def __getitem__(self, i):
            mask = torch.zeros(8, 8, dtype=torch.long)
            mask[:, 4:] = 1
            mask[0, 0] = 255
            image = torch.zeros(3, 8, 8)
            image[0] = mask.float() * 2 - 1  # channel 0 tells the class
            return image, mask

    class Perfect(nn.Module):
        def forward(self, x):
            return torch.stack([-x[:, 0], x[:, 0]], dim=1)

    class Constant(nn.Module):
        def forward(self, x):
            return torch.stack([torch.ones_like(x[:, 0]), torch.zeros_like(x[:, 0])], dim=1)

    perfect = evaluate(Perfect(), Data(), progress=False)
    assert perfect["miou"] == 1.0 and perfect["pixels"] == 2 * 63
    constant = evaluate(Constant(), Data(), progress=False)
    assert constant["pixel_accuracy"] == pytest.approx(31 / 63)
    assert constant["per_class_iou"] == {"a": pytest.approx(31 / 63), "b": 0.0}


def test_class_weights_scale_each_pixels_loss():
    from atrous.engine.losses import enet_weights

    weights = enet_weights(torch.tensor([900, 90, 10]))
    assert weights[2] > weights[1] > weights[0]
    torch.testing.assert_close(weights[0], 1 / torch.log(torch.tensor(1.02 + 0.9)))
    target = torch.tensor([[[0, 2]]])
    logits = torch.zeros(1, 3, 1, 2)  # every pixel loss is ln 3
    plain, weighted = CrossEntropy(), CrossEntropy()
    weighted.weight = torch.tensor([1.0, 1.0, 3.0])
    torch.testing.assert_close(weighted(logits, target), plain(logits, target) * 2)
