"""The CUDA paths (marker ``cuda``; every test skips where PyTorch sees no CUDA device, so the CPU
suite pays only the import). Run on a GPU machine with ``pytest -m cuda tests/test_cuda.py``, or
through ``benchmarks/gpu_check.sh``.

* every model's fp32 forward against its golden logits (TF32 off), and fp16 autocast against fp32;
* 20 iterations of toy training with fp16 AMP (GradScaler), channels_last and SyncBatchNorm in two
  processes under DistributedDataParallel (NCCL with two GPUs; gloo on one, so that SyncBatchNorm
  really synchronizes, which it skips in a one-process group), and the trainer's own fp16 path;
* ``atrous bench --device cuda`` by each paper's protocol (benchmarks/gpu_check.py's settings);
* ONNX Runtime's CUDA provider against the golden logits (with onnxruntime-gpu installed);
* TensorRT through torch-tensorrt or, failing that, ONNX Runtime's TensorRT provider.
"""
from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
import torch
import yaml

from atrous.cli import main
from atrous.deploy import fuse

from conftest import import_script
from golden_outputs import (INPUT_SHAPE, TOLERANCE, golden_input, golden_models, load_golden, relative_error,
                            seeded_model)

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

MODELS = golden_models()
# fp16 autocast against fp32 on the golden input, as fractions of the fp32 logits' RMS. CPU float16
# autocast on the golden models gave max 0.17, mean 0.029 and argmax agreement >= 98.6%: these
# bounds catch overflow, NaN and ops that should have stayed in fp32, not fp16's rounding.
FP16_MAX, FP16_MEAN, FP16_ARGMAX = 0.3, 0.06, 0.97
# ONNX Runtime's CUDA provider and TensorRT may run fp32 convolutions in TF32 (a 10-bit mantissa).
TF32_TOLERANCE = 2e-2
TENSORRT_MODELS = ("regseg", "dsnet", "fassdnet", "dwrseg_base")  # one per paper
TOY_REGSEG = {"stem_width": 8, "widths": [8, 16, 16, 16], "depths": [1, 1], "group_width": 8,
              "dilations": [[1], [1, 2]], "decoder_widths": [16, 8, 16]}
TOY_DATA = {"dataset": "toy", "size": 64, "widths": [4, 8], "count": 16, "num_classes": 3}


PAPER_SETTINGS = import_script("benchmarks/gpu_check.py").PAPER_SETTINGS


@pytest.fixture
def exact_fp32():
    """cuDNN and cuBLAS in true fp32 (no TF32) for comparisons with the golden logits."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("name", MODELS)
def test_fp32_matches_golden_and_fp16_autocast_is_close(name, exact_fp32):
    model = seeded_model(name).cuda()
    x = golden_input().cuda()
    with torch.no_grad():
        fp32 = model(x)
        with torch.autocast("cuda", dtype=torch.float16):
            fp16 = model(x)
    assert relative_error(fp32, load_golden(name)["logits"]) <= TOLERANCE
    assert torch.isfinite(fp16).all(), "fp16 autocast gave inf or NaN"
    rms = fp32.square().mean().sqrt()
    diff = (fp16.float() - fp32).abs()
    agree = (fp16.argmax(1) == fp32.argmax(1)).float().mean().item()
    assert diff.max() <= FP16_MAX * rms and diff.mean() <= FP16_MEAN * rms and agree >= FP16_ARGMAX, (
        f"{name}: fp16 vs fp32 max {diff.max() / rms:.3g}, mean {diff.mean() / rms:.3g} of the RMS, "
        f"argmax agreement {agree:.4f}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toy_batch(data, step: int, rank: int, world: int, device, per_rank: int = 4):
    index = [(step * world * per_rank + rank * per_rank + j) % len(data) for j in range(per_rank)]
    x = torch.stack([data[i][0] for i in index]).to(device).contiguous(memory_format=torch.channels_last)
    return x, torch.stack([data[i][1] for i in index]).to(device)


def _amp_sync_bn_worker(rank: int, world: int, port: int, out_dir: str, iters: int) -> None:
    """One DDP process: toy RegSeg, SyncBatchNorm, channels_last, fp16 autocast + GradScaler."""
    import torch.distributed as dist
    from torch import nn

    import atrous
    from atrous.data import build_dataset

    gpus = torch.cuda.device_count()
    device = torch.device("cuda", rank % gpus)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl" if gpus >= world else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = atrous.create_model("regseg", num_classes=3, **TOY_REGSEG)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device).to(memory_format=torch.channels_last)
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
        data = build_dataset(TOY_DATA, "train", train=True)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        scaler = torch.amp.GradScaler("cuda")
        losses = []
        for step in range(iters):
            x, y = _toy_batch(data, step, rank, world, device)
            with torch.autocast("cuda", dtype=torch.float16):
                loss = nn.functional.cross_entropy(net(x), y, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
        sync = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
        torch.save({"losses": losses, "scale": scaler.get_scale(), "sync_bn": len(sync),
                    "stats": torch.cat([torch.cat([m.running_mean, m.running_var]) for m in sync]).cpu(),
                    "params": torch.cat([p.detach().flatten() for p in model.parameters()]).cpu(),
                    "channels_last": all(p.is_contiguous(memory_format=torch.channels_last)
                                         for p in model.parameters() if p.dim() == 4)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_amp_channels_last_sync_bn_training_in_two_processes(tmp_path):
    import torch.multiprocessing as mp

    world, iters = 2, 20
    mp.spawn(_amp_sync_bn_worker, args=(world, _free_port(), str(tmp_path), iters), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for r in ranks:
        assert r["sync_bn"] > 0 and r["channels_last"]
        assert len(r["losses"]) == iters and all(math.isfinite(v) for v in r["losses"])
        assert math.isfinite(r["scale"]) and r["scale"] > 0
        assert sum(r["losses"][-5:]) < sum(r["losses"][:5]), r["losses"]
    # the ranks saw different images: equal running statistics mean SyncBatchNorm synchronized them
    assert torch.allclose(ranks[0]["stats"], ranks[1]["stats"], rtol=1e-4, atol=1e-6)
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])  # DDP kept the replicas equal


def test_trainer_fp16_amp_on_cuda(tmp_path):
    """``atrous train`` on CUDA: fp16 autocast with GradScaler (train.precision=fp16), sync_bn set
    (a no-op in one process; SyncBatchNorm itself is tested above), 20 iterations."""
    from atrous.engine import load_config, train

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("# Source: test recipe (RegSeg Sec 3.6 toy data)\n" + yaml.safe_dump(
        {"model": {"name": "regseg", "options": TOY_REGSEG, "sync_bn": True}, "data": TOY_DATA,
         "train": {"batch_size": 4, "max_iters": 20, "lr": 0.05, "warmup_iters": 2, "checkpoint_every": 10,
                   "log_every": 5, "eval_every": 20, "precision": "fp16"}}))
    out = tmp_path / "run"
    train(load_config(recipe, ["device=cuda"]), out, progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("setting", PAPER_SETTINGS, ids=lambda s: s.label.replace(" ", "-"))
def test_bench_cuda_by_paper_protocol(setting, capsys):
    h, w = setting.size
    args = ["bench", setting.model, "--device", "cuda", "--size", f"{h}x{w}", "--backend", "eager,fused"]
    assert main(args + (["--amp"] if setting.amp else [])) == 0
    out = capsys.readouterr().out
    assert torch.cuda.get_device_name() in out and "10 warm-up + 100 timed" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["eager"], ["fused"])}
    assert sorted(rows) == ["eager", "fused"]
    for cells in rows.values():  # precision, ms/image, FPS, ...
        assert cells[0] == ("float16" if setting.amp else "fp32")
        assert float(next(c for c in cells if c[0].isdigit())) > 0


def _ort_providers():
    try:
        import onnxruntime as ort
    except ImportError:
        return None, []
    return ort, ort.get_available_providers()


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_cuda_provider_matches_golden(name):
    from atrous.deploy.export import onnx_bytes, ort_session, run_ort

    ort, providers = _ort_providers()
    if "CUDAExecutionProvider" not in providers:
        pytest.skip(f"onnxruntime without CUDAExecutionProvider (providers: {providers}); install onnxruntime-gpu")
    session = ort_session(onnx_bytes(seeded_model(name), INPUT_SHAPE[2:]), device="cuda")
    assert session.get_providers()[0] == "CUDAExecutionProvider"
    got = torch.from_numpy(run_ort(session, golden_input()))
    assert relative_error(got, load_golden(name)["logits"]) <= TF32_TOLERANCE


def _tensorrt_logits(model, x: torch.Tensor) -> torch.Tensor:
    """The logits of ``model`` built by torch-tensorrt, or by ONNX Runtime's TensorRT provider."""
    try:
        import torch_tensorrt
    except ImportError:
        torch_tensorrt = None
    if torch_tensorrt is not None:
        engine = torch_tensorrt.compile(model.cuda(), ir="dynamo", inputs=[x.cuda()],
                                        enabled_precisions={torch.float32})
        with torch.no_grad():
            return engine(x.cuda()).float().cpu()
    from atrous.deploy.export import onnx_bytes

    ort, providers = _ort_providers()
    if "TensorrtExecutionProvider" not in providers:
        pytest.skip(f"neither torch-tensorrt nor onnxruntime's TensorrtExecutionProvider (providers: {providers})")
    session = ort.InferenceSession(onnx_bytes(model, tuple(x.shape[-2:])),
                                   providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert session.get_providers()[0] == "TensorrtExecutionProvider"
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy().astype(np.float32)})[0])


@pytest.mark.parametrize("name", TENSORRT_MODELS)
def test_tensorrt_matches_golden(name):
    """The BatchNorm-folded model, as DSNet and DWRSeg time it, through TensorRT in fp32."""
    got = _tensorrt_logits(fuse(seeded_model(name)), golden_input())
    assert relative_error(got, load_golden(name)["logits"]) <= TF32_TOLERANCE
