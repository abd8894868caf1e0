"""Parameters, multiply-accumulates and the papers' FLOP conventions.

Every aten op of one forward pass (eval mode, no grad) is recorded with its input and output
sizes; MACs are those of convolutions and matrix products (``torch.utils.flop_counter``'s
FLOPs / 2). The papers count differently, so each convention is a function of the same records:

* ``fvcore`` (RegSeg Table 8): conv MACs + 2 x numel per BatchNorm + 4 x output numel per
  bilinear upsample + input numel per adaptive average pool.
* ``thop`` (DSNet Table 9, ``thop.profile`` 0.1.1.post2209072238): conv MACs (bias not counted)
  + 4 x numel per affine BatchNorm + (input + output numel) per adaptive average pool; ReLU,
  sigmoid, element-wise ops and ``F.interpolate`` count nothing (thop only hooks modules, and
  the official code upsamples with the functional form). The paper's "GFLOPs" are these ops
  divided by 2**30.

Family modules may add conventions to :data:`CONVENTIONS`.
"""
from __future__ import annotations

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


def thop_ops(macs: int, records: list[OpRecord]) -> int:
    return (macs + _count(records, BATCH_NORM, factor=4) + _count(records, ADAPTIVE_POOL, field="in_numel")
            + _count(records, ADAPTIVE_POOL))


CONVENTIONS: dict[str, Callable[[int, list[OpRecord]], int]] = {"fvcore": fvcore_flops, "thop": thop_ops}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def complexity(model: nn.Module, input_size=(1024, 2048), batch: int = 1) -> dict:
    """``params``, ``macs`` (conv + linear multiply-accumulates), ``flops`` (2 x macs) and, for a
    registered model whose paper counts another way, ``paper_convention`` and ``paper_flops``
    (in the paper's convention, raw count). Also ``fvcore_flops`` for every model.
    The model is run once in eval mode on zeros; its train/eval state is restored."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(batch, 3, h, w, dtype=param.dtype, device=param.device)
    counter = FlopCounterMode(display=False)
    recorder = _Recorder()
    try:
        with torch.no_grad(), counter, recorder:
            model(x)
    finally:
        model.train(was_training)
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
