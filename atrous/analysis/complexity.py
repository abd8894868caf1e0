"""Parameters, multiply-accumulates and the papers' FLOP conventions.

Every aten op of one forward pass (eval mode, no grad) is recorded with its input and output
sizes; MACs are those of convolutions and matrix products (``torch.utils.flop_counter``'s
FLOPs / 2). The papers count differently, so each convention is a function of the same records:

* ``macs`` (DWRSeg Table 1): the MACs themselves.
* ``fvcore`` (RegSeg Table 8): conv MACs + 2 x numel per BatchNorm + 4 x output numel per
  bilinear upsample + input numel per adaptive average pool.
* ``ptflops`` (FASSD-Net Tables I/IV, ptflops' module hooks): conv MACs + output numel per conv
  with bias + 2 x numel per BatchNorm + output numel per ReLU/PReLU + input numel per average
  pool (functional interpolation and concatenation are not counted).
* ``thop`` (DSNet Table 9, ``thop.profile`` 0.1.1.post2209072238): conv MACs (bias not counted)
  + 4 x numel per affine BatchNorm + (input + output numel) per adaptive average pool; ReLU,
  sigmoid, element-wise ops and ``F.interpolate`` count nothing (thop only hooks modules, and
  the official code upsamples with the functional form). The paper's "GFLOPs" are these ops
  divided by 2**30.

"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class OpRecord:
    op: str  # aten overload packet name, e.g. "convolution", "native_batch_norm"
    in_numel: int
    out_numel: int
    has_bias: bool = False


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.records: list[OpRecord] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        outs = out if isinstance(out, (tuple, list)) else (out,)
        out_numel = outs[0].numel() if outs and isinstance(outs[0], torch.Tensor) else 0
        has_bias = func.overloadpacket.__name__ == "convolution" and len(args) > 2 and args[2] is not None
        self.records.append(OpRecord(func.overloadpacket.__name__,
                                     first.numel() if first is not None else 0, out_numel, has_bias))
        return out


def _count(records, ops, field="out_numel", factor=1):
    return sum(factor * getattr(r, field) for r in records if r.op in ops)


BATCH_NORM = {"native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit",
              "cudnn_batch_norm"}
BILINEAR = {"upsample_bilinear2d", "_upsample_bilinear2d_aa"}
ADAPTIVE_POOL = {"_adaptive_avg_pool2d", "adaptive_avg_pool2d", "mean"}


def fvcore_flops(macs: int, records: list[OpRecord]) -> int:
    return (macs + _count(records, BATCH_NORM, factor=2) + _count(records, BILINEAR, factor=4)
            + _count(records, ADAPTIVE_POOL, field="in_numel"))


RELU = {"relu", "relu_", "_prelu_kernel", "prelu"}
AVG_POOL = {"avg_pool2d"}


def ptflops_flops(macs: int, records: list[OpRecord]) -> int:
    """ptflops' count (FASSD-Net's GFLOPs, which are MACs): conv MACs + conv bias + 2 x BN +
    ReLU/PReLU outputs + average-pool inputs."""
    conv_bias = sum(r.out_numel for r in records if r.op == "convolution" and r.has_bias)
    return (macs + conv_bias + _count(records, BATCH_NORM, factor=2) + _count(records, RELU)
            + _count(records, AVG_POOL, field="in_numel"))


def thop_ops(macs: int, records: list[OpRecord]) -> int:
    """thop's count (DSNet's GFLOPs x 2**30): conv MACs + 4 x BN + adaptive-pool in + out."""
    return (macs + _count(records, BATCH_NORM, factor=4) + _count(records, ADAPTIVE_POOL, field="in_numel")
            + _count(records, ADAPTIVE_POOL))


CONVENTIONS: dict[str, Callable[[int, list[OpRecord]], int]] = {
    "macs": lambda macs, records: macs,  # papers whose "FLOPs" are conv/linear MACs (DWRSeg Table 1)
    "fvcore": fvcore_flops,
    "ptflops": ptflops_flops,
    "thop": thop_ops,
}


def count_params(model: nn.Module, training_only: bool = False) -> int:
    """Parameters of the eval model: those of submodules named in ``model.training_only``
    (auxiliary heads) count only with ``training_only=True``."""
    skip = () if training_only else tuple(f"{n}." for n in getattr(model, "training_only", ()))
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(skip))


def _count_forward(model: nn.Module, shape, device: str):
    """One eval forward of a copy of ``model`` on ``device`` under the counters."""
    copied = copy.deepcopy(model).to(device).eval()
    counter, recorder = FlopCounterMode(display=False), _Recorder()
    with torch.no_grad(), counter, recorder:
        copied(torch.zeros(*shape, device=device))
    return counter, recorder


def complexity(model: nn.Module, input_size=(1024, 2048), batch: int = 1) -> dict:
    """``params`` (of the eval model), ``macs`` (conv + linear multiply-accumulates), ``flops``
    (2 x macs), ``fvcore_flops`` and, for a registered model, ``paper_convention`` and
    ``paper_flops`` (the raw count in the paper's convention). Counting runs one eval forward on
    a copy of the model on PyTorch's meta device: shapes only, no arithmetic, so even
    1024x2048 takes about a second; ``model`` itself is not touched. A model whose forward reads
    a tensor's value (``regseg_search`` reads its rates) is counted by a real forward on CPU."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    try:
        counter, recorder = _count_forward(model, (batch, 3, h, w), "meta")
    except RuntimeError as e:  # a model that reads a tensor's value (regseg_search's rates): count on CPU
        if "meta" not in str(e):
            raise
        counter, recorder = _count_forward(model, (batch, 3, h, w), "cpu")
    macs = counter.get_total_flops() // 2
    result = {"params": count_params(model), "macs": int(macs), "flops": int(2 * macs),
              "input_size": (h, w), "fvcore_flops": int(fvcore_flops(macs, recorder.records))}
    convention = _paper_convention(model)
    if convention:
        result["paper_convention"] = convention
        result["paper_flops"] = int(CONVENTIONS[convention](macs, recorder.records))
    return result


def _paper_convention(model: nn.Module) -> str | None:
    name = getattr(model, "variant", None)
    if name is None:
        return None
    from ..models.registry import get_entry  # local: analysis must not import models at load

    rule = get_entry(name).card.flops_rule
    return rule if rule in CONVENTIONS else None
