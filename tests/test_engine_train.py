"""Training end to end on a tiny toy recipe: resume after SIGKILL is bitwise equal, two gloo
processes train under torchrun with synchronized BatchNorm, a NaN loss stops cleanly, and
``atrous train``/``atrous eval`` write everything they promise."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from atrous.cli import main
from atrous.engine import TrainingDiverged, load_config, train
from atrous.engine.checkpoint import latest_checkpoint, load_checkpoint

from conftest import REPO

TINY = {
    "model": {"name": "regseg", "options": {"stem_width": 8, "widths": [8, 16, 16, 16], "depths": [1, 1],
                                            "group_width": 8, "dilations": [[1], [1, 2]],
                                            "decoder_widths": [16, 8, 16]}},
    "data": {"dataset": "toy", "size": 64, "widths": [4, 8], "count": 16, "num_classes": 3,
             "transforms": {"train": {"hflip": 0.5, "scale": {"factor": [0.75, 1.25]}, "crop": [48, 48]},
                            "val": {}}},
    "train": {"batch_size": 4, "max_iters": 8, "lr": 0.05, "warmup_iters": 2, "checkpoint_every": 2,
              "log_every": 2, "eval_every": 4},
}


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as the subprocesses (OMP_NUM_THREADS=1): bitwise comparisons between them need
    the same thread count, and on a shared 2-core machine one thread is also the fastest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("# Source: test recipe (RegSeg Sec 3.6 toy data)\n" + yaml.safe_dump(TINY))
    return path


def run_cli(args, env_extra=None, check=True):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


KILL_AFTER_CHECKPOINT = """
import os, signal, sys
import atrous.engine.checkpoint as ckpt, atrous.engine.trainer as trainer
saved = ckpt.save_checkpoint
calls = {"after": None}
def save_then_arm(path, state):
    out = saved(path, state)
    if state["iteration"] == 4:
        calls["after"] = 0
    return out
def set_lr(*args):
    if calls["after"] is not None:
        calls["after"] += 1
        if calls["after"] == 2:  # in the middle of iteration 6, after the checkpoint at 4
            os.kill(os.getpid(), signal.SIGKILL)
    return real_set_lr(*args)
real_set_lr = trainer.set_lr
ckpt.save_checkpoint = save_then_arm
trainer.set_lr = set_lr
from atrous.cli import main
sys.exit(main(sys.argv[1:]))
"""


def same_weights(a, b, ignore=()) -> bool:
    """Bitwise-equal tensors and equal weights records, but for the time written and the
    ``ignore``-d config keys (the record's provenance keeps the resolved config)."""
    from atrous.engine.config import flatten
    from atrous.engine.records import without_time
    from atrous.weights import read_weights_file

    fa, fb = read_weights_file(a), read_weights_file(b)
    if fa.state.keys() != fb.state.keys() or not all(torch.equal(fa.state[k], fb.state[k]) for k in fa.state):
        return False
    ra, rb = (without_time(f.record) for f in (fa, fb))
    ca, cb = (flatten(r.provenance["config"]) for r in (ra, rb))
    provenance = lambda r: {k: v for k, v in r.provenance.items() if k != "config"}  # noqa: E731
    return (ra.replace(provenance={}) == rb.replace(provenance={}) and provenance(ra) == provenance(rb)
            and {k: v for k, v in ca.items() if k not in ignore} == {k: v for k, v in cb.items() if k not in ignore})


def test_resume_after_sigkill_and_data_workers_are_bitwise_equal(recipe, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = run_cli(["-c", KILL_AFTER_CHECKPOINT, "train", str(recipe), "--out", str(killed)], check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed / "model.safetensors").exists()
    assert load_checkpoint(latest_checkpoint(killed / "checkpoints"))["iteration"] == 4
    assert main(["train", str(recipe), "--out", str(killed), "--resume"]) == 0
    assert main(["train", str(recipe), "--out", str(full)]) == 0
    assert same_weights(full / "model.safetensors", killed / "model.safetensors")
    # and the data workers do not change a bit either (per-sample seeds)
    workers = tmp_path / "workers"
    assert main(["train", str(recipe), "--out", str(workers), "--set", "train.num_workers=2"]) == 0
    assert same_weights(workers / "model.safetensors", full / "model.safetensors", ignore=("train.num_workers",))
    logged = [json.loads(ln)["iter"] for ln in (killed / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(logged) and logged.count(6) == 1  # the lost iterations were not logged twice


def test_two_gloo_processes_train_with_ddp_and_synchronized_batchnorm(recipe, tmp_path):
    out = tmp_path / "ddp"  # what they compute is tests/test_distributed.py's; here the command runs
    run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "atrous.cli",
             "train", str(recipe), "--out", str(out), "--set", "train.max_iters=4", "--set", "train.sync_bn=true"])
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    # 16 images, 4 per process and 2 processes -> 2 iterations per epoch: iteration 4 is in epoch 1
    assert train_records[-1]["iter"] == 4 and train_records[-1]["epoch"] == 1
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train_records)
    assert (out / "model.safetensors").is_file() and (out / "eval_val.json").is_file()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(recipe, tmp_path, monkeypatch):
    import atrous.engine.losses as losses

    real = losses.loss_from_config

    def poisoned(cfg, ignore_index=255, class_weights=None):
        criterion = real(cfg, ignore_index, class_weights)
        calls = {"n": 0}

        def loss(output, target):
            calls["n"] += 1
            value = criterion(output, target)
            return value * float("nan") if calls["n"] == 3 else value

        return loss

    monkeypatch.setattr(losses, "loss_from_config", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"loss is nan at iteration 3.*iter_0000002\.pt"):
        train(load_config(recipe), out, progress=False)
    assert load_checkpoint(out / "checkpoints" / "iter_0000002.pt")["iteration"] == 2
    assert not (out / "model.safetensors").exists()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["iter_0000002.pt"]


def test_cli_train_then_eval_end_to_end(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--set", "train.max_iters=4"]) == 0
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "curves.png", "prediction.png", "eval_val.json"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["max_iters"] == 4 and saved["data"]["size"] == 64
    trained = json.loads((out / "eval_val.json").read_text())
    assert main(["eval", str(recipe), "--weights", str(out / "model.safetensors"), "--json", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["confusion_matrix"] == trained["confusion_matrix"] and again["miou"] == trained["miou"]
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "pixel accuracy" in printed
    # a second train into the same folder without --resume is refused, naming the folder
    assert main(["train", str(recipe), "--out", str(out), "--set", "train.max_iters=4"]) == 2
    assert str(out) in capsys.readouterr().err
    # unknown keys name the key
    assert main(["train", str(recipe), "--out", str(tmp_path / "x"), "--set", "train.max_iter=3"]) == 2
    assert "train.max_iter" in capsys.readouterr().err


def test_bf16_grad_clip_ema_class_uniform_and_labelled_best_of_many(recipe, tmp_path):
    out = tmp_path / "opts"
    config = load_config(recipe, ["train.max_iters=6", "train.eval_every=3", "train.precision=bf16",
                                  "train.grad_clip=1.0", "train.ema.enabled=true", "train.ema.every=1",
                                  "eval.select=best", "data.class_uniform=0.5"])
    summary = train(config, out, progress=False)
    from atrous import load

    assert load(out / "model.safetensors").record.provenance["weights"] == "ema"
    best = json.loads((out / "best.json").read_text())
    assert best["label"] == "best of 1 evaluations on val (selected on the evaluation set)"
    assert best["iter"] == 3 and (out / "model_best.safetensors").is_file()
    assert summary["best"] == best and 0.0 <= summary["miou"] <= 1.0


def test_eval_of_an_onnx_file_matches_pytorch_and_checks_its_shape(recipe, tmp_path, capsys):
    from atrous import load
    from atrous.deploy.export import export_onnx

    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--set", "train.max_iters=2"]) == 0
    model = load(out / "model.safetensors")
    export_onnx(model, tmp_path / "m.onnx", (64, 64))
    assert main(["eval", str(recipe), "--weights", str(tmp_path / "m.onnx"), "--json", str(tmp_path / "o.json")]) == 0
    onnx_result = json.loads((tmp_path / "o.json").read_text())
    torch_result = json.loads((out / "eval_val.json").read_text())
    assert abs(onnx_result["miou"] - torch_result["miou"]) < 1e-3
    export_onnx(model, tmp_path / "small.onnx", (32, 32))  # static 32x32: the 64x64 toy images are refused
    assert main(["eval", str(recipe), "--weights", str(tmp_path / "small.onnx")]) == 2
    assert "small.onnx" in capsys.readouterr().err


def test_precise_batchnorm_changes_statistics_not_weights(recipe, tmp_path):
    from atrous.weights import read_weights_file

    runs = {}
    for batches in (0, 2):
        out = tmp_path / f"precise{batches}"
        train(load_config(recipe, ["train.max_iters=4", f"train.precise_bn.batches={batches}"]), out, progress=False)
        runs[batches] = read_weights_file(out / "model.safetensors").state
    stats = [k for k in runs[0] if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in runs[0] if k.endswith("weight")]
    assert all(torch.equal(runs[0][k], runs[2][k]) for k in weights)
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in stats)
