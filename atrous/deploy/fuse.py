"""Inference fast path: BatchNorm folded into convolutions, channels_last, inference mode.

DSNet's speed protocol measures with "BatchNorm folded" (batch 1); RegSeg Sec 4.6 times the
network as it is. Folding is exact algebra: a BatchNorm in eval mode is the per-channel affine map
``y = (x - mean) / sqrt(var + eps) * gamma + beta``, so a convolution followed by it is the same
convolution with weights scaled by ``gamma / sqrt(var + eps)`` and a new bias. Folding is done in
float64 and cast back, so the fused model equals the unfused one to float32 rounding.

Which BatchNorms fold is decided from the module tree alone (no tracing, so models whose forward
branches on shapes are fine):

* inside every ``nn.Sequential`` (``ConvBNAct`` is one), a BatchNorm that directly follows a
  convolution-like child: an ``nn.Conv2d`` or any module registered with :func:`register_folder`,
  e.g. :class:`~atrous.nn.DilatedConv`, whose branches each receive their own slice of the BatchNorm;
* anywhere else, from the data flow of one forward pass on a small input
  (:mod:`atrous.deploy.dataflow`): ``conv -> BN``; ``cat([conv, conv, ...]) -> BN`` (the BN
  split over the concatenated convs, e.g. DWRSeg's DWR module); and ``BN -> conv`` when the conv
  has no padding (exact: there is no border where the shifted zeros would differ), folded forward
  into the conv (DWRSeg's SIR/DWR aggregation before their 1x1 conv). Each pattern requires that
  no other op reads the intermediate result.

BatchNorms in other positions (after an activation and before another activation, like
FASSD-Net's BN-PReLU) stay, and are listed by :func:`unfused_batchnorms`.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..nn import DilatedConv

# conv-like type -> fold(conv, scale, shift): scale the module's output channels by ``scale``
# and add ``shift`` (both float64, one entry per output channel).
_FOLDERS: dict[type, Callable[[nn.Module, torch.Tensor, torch.Tensor], None]] = {}


def register_folder(cls: type, fold: Callable[[nn.Module, torch.Tensor, torch.Tensor], None]) -> None:
    """Teach :func:`fuse` to fold a BatchNorm into modules of type ``cls``. ``fold(module, scale,
    shift)`` must make ``module(x)`` equal ``module(x) * scale + shift`` per output channel."""
    _FOLDERS[cls] = fold


def fold_into_conv2d(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """``conv`` becomes ``conv(x) * scale + shift`` (per output channel), gaining a bias."""
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    new_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    new_bias = bias * scale + shift
    conv.weight = nn.Parameter(new_weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)


def fold_into_branches(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """For a module whose output is the channel concatenation of ``module.branches`` (in order),
    as :class:`~atrous.nn.DilatedConv`: each branch gets its own slice of the BatchNorm."""
    start = 0
    for branch in module.branches:
        width = branch.out_channels
        fold_into_conv2d(branch, scale[start:start + width], shift[start:start + width])
        start += width
    if start != scale.numel():
        raise ValueError(f"{type(module).__name__}: branches give {start} channels, BatchNorm has {scale.numel()}")


register_folder(nn.Conv2d, fold_into_conv2d)
register_folder(DilatedConv, fold_into_branches)


def _folder_for(module: nn.Module):
    for cls in type(module).__mro__:
        if cls in _FOLDERS:
            return _FOLDERS[cls]
    return None


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BatchNorm as ``x * scale + shift`` (float64)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _fold_sequentials(model: nn.Module) -> int:
    folded = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for prev_name, name in zip(names, names[1:]):
            prev, bn = seq._modules[prev_name], seq._modules[name]
            if type(bn) is not nn.BatchNorm2d:  # exact type: SyncBatchNorm etc. share the maths but not always
                continue
            fold = _folder_for(prev)
            if fold is None:
                continue
            scale, shift = _bn_affine(bn)
            fold(prev, scale, shift)
            seq._modules[name] = nn.Identity()
            folded += 1
    return folded


def fold_forward_into_conv2d(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """``conv`` becomes ``conv(x * scale + shift)`` (per input channel); exact when the conv has
    no padding."""
    weight = conv.weight.detach().double()
    groups = conv.groups
    out_c, in_per_group = weight.shape[:2]
    s = scale.reshape(groups, 1, in_per_group)  # input channel g * in_per_group + i
    t = shift.reshape(groups, 1, in_per_group)
    w = weight.reshape(groups, out_c // groups, in_per_group, -1)
    new_weight = (w * s.unsqueeze(-1)).reshape_as(weight)
    extra = (w.sum(-1) * t).sum(-1).reshape(out_c)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(out_c, dtype=torch.float64)
    conv.weight = nn.Parameter(new_weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter((bias + extra).to(conv.weight.dtype), requires_grad=False)


def _unpadded_conv(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.padding_mode == "zeros"
            and all(p == 0 for p in (module.padding if not isinstance(module.padding, str) else (1,))))


def _example_input(model: nn.Module) -> torch.Tensor:
    param = next(model.parameters())
    side = max(64, int(getattr(model, "min_size", 32)))
    return torch.randn(1, 3, side, side, dtype=param.dtype, device=param.device)


def _fold_traced(model: nn.Module, example: torch.Tensor | None) -> int:
    """Fold the BatchNorms that the Sequential rule cannot see, from the data flow of one forward
    pass (:class:`~atrous.deploy.dataflow.Dataflow`; see the module docstring for the patterns)."""
    from .dataflow import Dataflow

    from ..models.base import SegmentationModel

    bns = {n for n, m in model.named_modules() if type(m) is nn.BatchNorm2d}
    if not bns or (example is None and not isinstance(model, SegmentationModel)):
        return 0  # without an example input only a segmentation model's input shape is known
    flow = Dataflow(model, _example_input(model) if example is None else example)
    folded = 0
    for call in flow.calls:
        if call.kind != "module" or call.target not in bns or not flow.called_once(call.target):
            continue
        if len(call.inputs) != 1 or len(call.outputs) != 1:
            continue
        bn = model.get_submodule(call.target)
        source = flow.producer.get(call.inputs[0])
        done = False
        if source is not None and flow.only_user(call.inputs[0]) is call:
            if source.kind == "module" and flow.called_once(source.target):
                prev = model.get_submodule(source.target)
                fold = _folder_for(prev)
                if fold is not None:
                    fold(prev, *_bn_affine(bn))
                    done = True
            elif source.kind == "function" and source.target is torch.cat and _cat_dim(source) in (1, -3):
                done = _fold_into_cat(model, flow, source, bn)
        if not done:
            user = flow.only_user(call.outputs[0])
            if (user is not None and user.kind == "module" and flow.called_once(user.target)
                    and user.inputs == call.outputs and _unpadded_conv(model.get_submodule(user.target))):
                fold_forward_into_conv2d(model.get_submodule(user.target), *_bn_affine(bn))
                done = True
        if done:
            owner, _, attr = call.target.rpartition(".")
            setattr(model.get_submodule(owner) if owner else model, attr, nn.Identity())
            folded += 1
    return folded


def _cat_dim(call) -> int:
    return call.kwargs.get("dim", call.args[1] if len(call.args) > 1 else 0)


def _fold_into_cat(model: nn.Module, flow, cat, bn) -> bool:
    """BN after ``cat([conv_1(.), conv_2(.), ...], dim=1)``: each conv takes its slice."""
    convs = []
    for t in cat.inputs:
        producer = flow.producer.get(t)
        if (producer is None or producer.kind != "module" or flow.only_user(t) is not cat
                or not flow.called_once(producer.target)):
            return False
        conv = model.get_submodule(producer.target)
        if type(conv) is not nn.Conv2d:
            return False
        convs.append(conv)
    scale, shift = _bn_affine(bn)
    if sum(c.out_channels for c in convs) != scale.numel():
        return False
    start = 0
    for conv in convs:
        width = conv.out_channels
        fold_into_conv2d(conv, scale[start:start + width], shift[start:start + width])
        start += width
    return True


def unfused_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers still in ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def drop_training_only(model: nn.Module) -> nn.Module:
    """Remove (set to ``None``) the submodules named in ``model.training_only``, in place."""
    for name in getattr(model, "training_only", ()):
        setattr(model, name, None)
    return model


def fuse(model: nn.Module, inplace: bool = False, example: torch.Tensor | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` (or ``model`` itself with ``inplace=True``) with every
    BatchNorm that can be folded into a convolution folded and replaced by ``nn.Identity``.
    ``example`` is the input of the one forward pass that finds the patterns outside
    ``nn.Sequential`` (default for segmentation models: 1 x 3 x 64 x 64 random; other modules
    without ``example`` get the Sequential rule only). The number folded is stored as
    ``fused.folded_batchnorms``. Submodules the model marks ``training_only`` (auxiliary heads,
    never run in eval) are dropped."""
    if not inplace:
        model = copy.deepcopy(model)
    drop_training_only(model)
    model.eval()
    with torch.no_grad():
        model.folded_batchnorms = _fold_sequentials(model) + _fold_traced(model, example)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class InferenceModel(nn.Module):
    """A model prepared for inference: runs under ``torch.inference_mode`` with its input in the
    requested memory format. Output is the wrapped model's output, unchanged."""

    def __init__(self, model: nn.Module, channels_last: bool = True):
        super().__init__()
        self.model = model
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor):
        with torch.inference_mode():
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x)


def prepare_inference(model: nn.Module, fuse_bn: bool = True, channels_last: bool = True,
                      compile: bool = False, dtype: torch.dtype | None = None) -> nn.Module:
    """The fast inference path: BatchNorm folded (:func:`fuse`), weights in channels_last,
    inference mode, and optionally ``torch.compile`` (Inductor; needs a C++ compiler on CPU,
    where Inductor's weight freezing is switched on, a process-wide setting).

    ``model`` itself is not modified."""
    model = fuse(model) if fuse_bn else copy.deepcopy(model).eval()
    if dtype is not None:
        model = model.to(dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        if next(model.parameters()).device.type == "cpu":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # weights as constants: folded and prepacked for oneDNN (global)
        model = torch.compile(model, dynamic=False)
    return InferenceModel(model, channels_last).eval()
