"""Training precision per machine (``train.precision: auto``, ``train.channels_last``) and the step
builders of benchmarks/train_speed.py on a tiny model (issue 14). No timings are asserted."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

import atrous.deploy.machine as machine
from atrous.engine import load_config
from atrous.engine.trainer import autocast_for, resolve_precision, use_channels_last

from conftest import REPO

AMX = machine.CpuInfo("Intel Xeon", frozenset({"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512f"}))
EPYC = machine.CpuInfo("AMD EPYC 7B12", frozenset({"avx2", "fma"}))
CPU = torch.device("cpu")
TINY = ["model.options={stem_width: 8, widths: [8, 16, 16, 16], depths: [1, 1], group_width: 8, "
        "dilations: [[1], [1, 2]], decoder_widths: [16, 8, 16]}",
        "data.size=48", "data.count=8", "data.num_classes=3", "train.batch_size=2", "train.max_iters=2"]


def load_train_speed():
    spec = importlib.util.spec_from_file_location("train_speed", REPO / "benchmarks" / "train_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cpu, precision, channels_last", [(AMX, "bf16", True), (EPYC, "fp32", False)])
def test_auto_precision_follows_the_cpus_bf16_units(monkeypatch, cpu, precision, channels_last):
    monkeypatch.setattr(machine, "cpu_info", lambda: cpu)
    assert resolve_precision(CPU, "auto") == precision
    assert use_channels_last(CPU, "auto", "auto") is channels_last
    assert resolve_precision(CPU, "fp32") == "fp32" and use_channels_last(CPU, "auto", "fp32") is False
    assert use_channels_last(CPU, True, "fp32") is True and use_channels_last(CPU, False, "bf16") is False
    context, scaler = autocast_for(CPU, "auto")
    assert not scaler and isinstance(context, torch.autocast) == (precision == "bf16")
    assert resolve_precision(torch.device("cuda"), "auto") == "fp16"


def test_recipes_toy_pins_fp32_and_camvid_cpu_uses_auto():
    assert load_config("toy")["train"]["precision"] == "fp32"
    camvid = load_config("camvid_cpu")["train"]
    assert camvid["precision"] == "auto" and camvid["channels_last"] == "auto"
    with pytest.raises(ValueError, match="train.channels_last"):
        load_config("toy", ["train.channels_last=yes please"])


def test_train_speed_steps_run_on_a_tiny_model(monkeypatch):
    ts = load_train_speed()
    monkeypatch.setattr(machine, "cpu_info", lambda: AMX)
    config = load_config("toy", TINY + ["train.precision=auto"])
    batches, classes, ignore, source = ts.recipe_batches(config, 2)
    assert classes == 3 and len(batches) == 2 and "trainer's first 2 batches" in source
    label, levers = ts.parse_variant("bf16 fused ce: precision=bf16 sgd=fused ohem=ce channels_last=true")
    assert label == "bf16 fused ce" and levers.channels_last is True and levers.sgd == "fused"
    steps = {"reference": ts.build_reference_step(config, classes, CPU, ignore),
             "trainer": ts.build_trainer_step(config, classes, CPU, None, ignore),
             label: ts.build_trainer_step(config, classes, CPU, levers, ignore, label),
             "foreach": ts.build_trainer_step(config, classes, CPU, ts.Levers(sgd="foreach"), ignore, "foreach")}
    # same seed, same initial weights: the reference is the same network
    ref_params = [p.detach().clone() for p in steps["reference"].model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ref_params, steps["trainer"].model.parameters()))
    assert steps["trainer"].channels_last and "bf16, channels_last" in steps["trainer"].describe
    assert "fp32, NCHW" in steps["reference"].describe and "loss ce" in steps[label].describe
    wall, cpu = ts.time_steps(steps, batches, per_round=1, rounds=2, warmup=0)
    assert all(len(t) == 2 for t in wall.values()) and set(cpu) == set(steps)
    assert any(not torch.equal(a, b) for a, b in zip(ref_params, steps["reference"].model.parameters()))
    assert "ref/step" in ts.report(steps, wall, cpu, source, 1)
    with pytest.raises(SystemExit, match="precision"):
        ts.parse_variant("x: precision=int4")
