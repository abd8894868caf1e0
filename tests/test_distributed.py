"""Many processes compute what one process computes: two gloo processes of batch b with
``train.sync_bn`` end with the weights of one process of batch 2b (BatchNorm statistics over the
global batch, the loss normalised by the global valid-pixel count); and SyncBatchNorm2d, the CPU
synchronized BatchNorm, is BatchNorm2d's math in a single process.

The end-to-end comparison trains in float64. In float32 two runs whose sums are merely ordered
differently drift apart chaotically: a pre-activation within rounding of 0 flips a ReLU and the
gradient jumps (measured on this setup in float32 after 6 iterations: 2 processes against one
differ by 4e-6 to 1e-3 depending on the seed; one process with plain BatchNorm2d against the same
process with SyncBatchNorm2d, whose statistics agree to float32 rounding, by up to 6e-5). In
float64 rounding stays near 1e-13, while a missing synchronization or a per-process loss
normalisation moves the saved weights by 0.85 and 0.20, so the comparison holds to 1e-8 (the
issue asks for 1e-5)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from torch import nn

from atrous.engine import load_config, train
from atrous.weights import read_weights_file
from atrous.engine.sync_batchnorm import SyncBatchNorm2d, SyncBatchNormFunction, convert_sync_batchnorm
from atrous.data import build_dataset
from atrous.engine.plan import EpochPlan, SeededSamples
from atrous.errors import UserError

from conftest import REPO

PER_PROCESS = 2
# The toy data scaled down by up to 2x and padded back to 32x32 with ignore (crop), so every batch
# has a different number of valid pixels per process.
SMALL = {
    "model": {"name": "regseg", "options": {"stem_width": 8, "widths": [8, 16, 16, 16], "depths": [1, 1],
                                            "group_width": 8, "dilations": [[1], [1, 2]],
                                            "decoder_widths": [16, 8, 16]}},
    "data": {"dataset": "toy", "size": 32, "widths": [4, 8], "count": 12, "num_classes": 3,
             "transforms": {"train": {"hflip": 0.5, "scale": {"factor": [0.5, 1.0]}, "crop": [32, 32]},
                            "val": {}}},
    "train": {"batch_size": PER_PROCESS, "max_iters": 6, "lr": 0.05, "warmup_iters": 2, "checkpoint_every": 6,
              "log_every": 1, "eval_every": None, "sync_bn": True},
}


class Float64Images(torch.utils.data.Dataset):
    """A training set whose images are float64 (for a float64 model)."""

    def __init__(self, dataset):
        self.dataset, self.num_classes = dataset, dataset.num_classes

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, request):
        image, mask = self.dataset[request]
        return image.double(), mask


def train_float64(recipe, out, overrides=()) -> None:
    """Train ``recipe`` in float64 without the val split (no evaluation, no prediction picture)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        config = load_config(recipe, overrides)
        train_set = Float64Images(build_dataset(config["data"], config["train"]["split"], train=True))
        train(config, out, progress=False, datasets=(train_set, None))
    finally:
        torch.set_default_dtype(dtype)


TRAIN_SCRIPT = """
import sys
import atrous.engine.plots
from test_distributed import train_float64
atrous.engine.plots.plot_curves = lambda *args: None  # no matplotlib import: 1.5 s saved
train_float64(sys.argv[1], sys.argv[2], sys.argv[3:])
"""


@pytest.fixture()
def recipe(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("# Source: test recipe (RegSeg Sec 3.6 toy data)\n" + yaml.safe_dump(SMALL))
    return path


def train_in_processes(recipe, out, processes: int, overrides=()):
    script = out.parent / "train_script.py"
    script.write_text(TRAIN_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            str(script), str(recipe), str(out), *overrides]
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def logged_losses(out) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_gloo_processes_of_batch_b_equal_one_process_of_batch_2b(recipe, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun processes (OMP_NUM_THREADS=1)
    try:
        config = load_config(recipe, [f"train.batch_size={2 * PER_PROCESS}"])
        train_set = build_dataset(config["data"], config["train"]["split"], train=True)
        plan = EpochPlan(train_set, 2 * PER_PROCESS, 1, 0, int(config["seed"]))
        masks = [SeededSamples(train_set, plan.items(0))[i][1] for i in range(2 * PER_PROCESS)]
        valid = [int((mask != 255).sum()) for mask in masks]
        assert min(valid) < 32 * 32 and len(set(valid)) > 1  # ignore pixels, unevenly spread
        one, two = tmp_path / "one", tmp_path / "two"
        train_float64(recipe, one, [f"train.batch_size={2 * PER_PROCESS}"])
    finally:
        torch.set_num_threads(threads)
    train_in_processes(recipe, two, 2)
    single, synced = (read_weights_file(run / "model.safetensors").state for run in (one, two))
    assert single.keys() == synced.keys()  # the synchronized model saves plain BatchNorm2d's layout
    for key, value in single.items():
        if value.is_floating_point():
            torch.testing.assert_close(synced[key], value, rtol=0, atol=1e-8, msg=key)
        else:
            assert torch.equal(synced[key], value), key  # num_batches_tracked
    # the logged loss is the global batch's, iteration by iteration
    assert logged_losses(two) == pytest.approx(logged_losses(one), abs=1e-8)


def two_batchnorms(dtype=torch.float64, momentum=0.1):
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(5, momentum=momentum).to(dtype)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-1.0, 1.0)
    return plain, convert_sync_batchnorm(copy.deepcopy(plain))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_sync_batchnorm_in_one_process_is_batchnorm2d(momentum):
    plain, synced = two_batchnorms(momentum=momentum)
    assert type(synced) is SyncBatchNorm2d
    for step in range(3):  # a mean far from 0 and several steps: running statistics too
        x = (torch.randn(4, 5, 6, 7, dtype=torch.float64) * 3 + 10 * step).requires_grad_()
        x_synced = x.detach().clone().requires_grad_()
        grad = torch.randn_like(x)
        plain(x).backward(grad)
        synced(x_synced).backward(grad)
        torch.testing.assert_close(x_synced.grad, x.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synced(x), plain(x), rtol=1e-12, atol=1e-12)
    for (key, a), b in zip(plain.state_dict().items(), synced.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12, msg=key)
    torch.testing.assert_close(synced.weight.grad, plain.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synced.bias.grad, plain.bias.grad, rtol=1e-12, atol=1e-12)
    synced.load_state_dict(plain.state_dict())
    plain.eval(), synced.eval()  # eval: BatchNorm2d itself, with the running statistics
    assert torch.equal(synced(x), plain(x))


def test_sync_batchnorm_gradient_passes_gradcheck_and_matches_in_float32():
    x = torch.randn(3, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: SyncBatchNormFunction.apply(x, w, b, None, None, 1e-5, 0.1, None), (x, weight, bias))
    plain, synced = two_batchnorms(torch.float32)
    x = torch.randn(4, 5, 6, 7) * 3 + 10
    torch.testing.assert_close(synced(x), plain(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        synced(torch.randn(1, 5, 1, 1))


def test_conversion_keeps_parameters_and_the_state_dict_layout():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    weight, keys = model[1].weight, list(model.state_dict())
    converted = convert_sync_batchnorm(model)
    assert converted is model and type(model[1]) is SyncBatchNorm2d and type(model[2][0]) is SyncBatchNorm2d
    assert model[1].weight is weight  # an optimizer built before the conversion still trains it
    assert list(model.state_dict()) == keys
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    plain.load_state_dict(model.state_dict())


def test_model_sync_bn_names_its_new_key(recipe):
    with pytest.raises(UserError, match=r"model\.sync_bn is now train\.sync_bn"):
        load_config(recipe, ["model.sync_bn=true"])


def test_the_parts_of_a_split_batch_combine_into_the_whole_batch_loss():
    """What each process contributes (PartialLoss) adds up to the one-process loss for ce and
    bootstrap, and for ohem_regseg whenever the global batch takes its threshold form."""
    from atrous.engine.losses import Bootstrap, CrossEntropy, RegSegOHEM

    torch.manual_seed(0)
    logits = torch.randn(4, 3, 8, 8, dtype=torch.float64) * 3
    target = torch.randint(0, 3, (4, 8, 8))
    target[0, :5] = 255
    target[3, :, :2] = 255
    for criterion in (CrossEntropy(), Bootstrap(255, 0.3, 20), RegSegOHEM(255, 0.3, 1 / 16)):
        parts = [criterion.partial(logits[rank::2], target[rank::2]) for rank in range(2)]
        combined = sum(part.total for part in parts) / sum(part.count for part in parts)
        torch.testing.assert_close(combined, criterion(logits, target), rtol=1e-12, atol=0)
