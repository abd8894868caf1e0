"""Stored expected outputs of every registered model (torchvision-style "expected" tensors).

Each model is built with ``NUM_CLASSES`` classes from a seeded state that resembles a trained
network's (not the plain initialization, where every BatchNorm is the identity and moving or
dropping one changes nothing):

1. the model's own initialization under ``torch.manual_seed(SEED)``;
2. every BatchNorm's affine parameters drawn from a seeded generator (gamma in [0.5, 1.5),
   beta ~ N(0, 0.2)), every PReLU slope in [0.05, 0.45);
3. every BatchNorm's running statistics measured on a seeded calibration batch (one forward pass
   in training mode), then perturbed (mean shifted by 0.1 std, variance scaled by exp(N(0, 0.2)))
   and floored at a tenth of the layer's mean variance, so that a channel that happened to be
   dead on the calibration batch does not amplify by 1/sqrt(eps) on another input.

Two probes per model, stored in ``tests/golden/NAME.safetensors``:

* ``logits``: the full logits for the seeded ``INPUT_SHAPE`` input (1 x 3 x 64 x 96): pins every
  pixel (resizes, their ``align_corners``, padding and cropping, the order of every op);
* ``wide`` and ``tall``: the logits, average-pooled over 8 x 8 cells, for a seeded 32 x W input and
  its transpose, W = ``LONG_SIDE[name]``. A dilated conv only differs from one with another rate
  where the feature map is longer than the rate: at 64 x 96, RegSeg's rate-14 convs at 1/16 (4 x 6)
  and FASSD-Net's rate-36 DAPF at 1/32 see nothing but their centre tap. W is chosen per model so
  that every dilated kernel fits inside its feature map along the long side (checked by
  ``short_dilations``), in both orientations for the asymmetric (1x3 / 3x1) convs.

All of it runs in float64; the float32 model under test is the float64 one cast down, and the
stored tensors are the float64 model's outputs cast to float32. So the only difference a correct
float32 run shows is its own rounding, whatever the machine (see ``TOLERANCE``).

``python scripts/regenerate_golden.py`` prints how far each model is from its stored file and
rewrites the files only with ``--write``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import atrous
from atrous.models.regseg_search import SEARCH_START
from atrous.nn import FractionalDilatedConv

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
INPUT_FILE = GOLDEN_DIR / "input.safetensors"
SEED = 0
INPUT_SHAPE = (1, 3, 64, 96)
CALIBRATION_SHAPE = (2, 3, 64, 96)
NUM_CLASSES = 4
LONG_SHORT_SIDE = 32
POOL = 8  # the wide and tall logits are stored average-pooled over POOL x POOL cells
# The long side of the wide/tall probes: the smallest multiple of 32 past the widest dilated
# kernel's reach (rate x stride), plus a margin: RegSeg 14 (15 for the search's 14.7) at 1/16,
# DWRSeg 5 at 1/32, DSNet's SPASPP 24 at 1/8, FASSD-Net's DAPF 36 at 1/32 (1/48 for L1 and
# 1/64 for L2, whose stems have larger strides).
LONG_SIDE = {"regseg": 288, "regseg_large": 288, "regseg_search": 288, "dwrseg_base": 224,
             "dwrseg_large": 224, "dsnet": 224, "dsnet_head64": 224, "dsnet_head256": 224,
             "dsnet_base": 224, "fassdnet": 1216, "fassdnet_l1": 1824, "fassdnet_l2": 2400}
# max |output - golden| / RMS(golden), per probe. float32 rounding gave at most 4.7e-5 (eager and
# fused PyTorch, ONNX Runtime; every model and probe), so 1e-3 leaves a 20x margin for other CPUs
# and libraries. The 15 deliberate changes tried when these files were made (x16/x32 swapped in
# DWRSeg's concatenation, DWR or SIR residual dropped, the final resize's align_corners flipped in
# each family, one dilation changed by 1 or 2 in each family, a BatchNorm moved after its
# activation) moved some probe of every model they touch by 0.067 to 290 of its RMS.
TOLERANCE = 1e-3

# regseg_search at fractional rates, so that the bilinear four-conv path of
# FractionalDilatedConv is what the golden output pins (at the integer start it is plain RegSeg).
FRACTIONAL_RATES = tuple((a + 0.3, b + 0.7) for a, b in SEARCH_START)
OVERRIDES: dict[str, dict] = {"regseg_search": {"dilations": FRACTIONAL_RATES}}


def golden_models() -> list[str]:
    """Every registered model once (an alias builds the same model as its target)."""
    return atrous.list_models(aliases=False)


def golden_input(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64).to(dtype)


def probe_inputs(name: str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """``{"logits": 1x3x64x96, "wide": 1x3x32xW, "tall": 1x3xWx32}`` (seeded; tall is wide
    transposed)."""
    g = torch.Generator().manual_seed(SEED + 2)
    wide = torch.randn(1, 3, LONG_SHORT_SIDE, LONG_SIDE[name], generator=g, dtype=torch.float64).to(dtype)
    return {"logits": golden_input(dtype), "wide": wide, "tall": wide.transpose(-1, -2).contiguous()}


def probe_outputs(model, name: str) -> dict[str, torch.Tensor]:
    """The model's outputs on :func:`probe_inputs`, the long probes pooled (``POOL``)."""
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        out = {key: model(x) for key, x in probe_inputs(name, dtype).items()}
    return {key: y if key == "logits" else F.avg_pool2d(y, POOL) for key, y in out.items()}


def _randomize_affine(model: nn.Module, g: torch.Generator) -> list[nn.modules.batchnorm._BatchNorm]:
    draw = dict(generator=g, dtype=torch.float64)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        if bn.affine:
            bn.weight.copy_(torch.rand(bn.weight.shape, **draw) + 0.5)
            bn.bias.copy_(0.2 * torch.randn(bn.bias.shape, **draw))
    for m in model.modules():
        if isinstance(m, nn.PReLU):
            m.weight.copy_(0.05 + 0.4 * torch.rand(m.weight.shape, **draw))
    return bns


def _calibrate_statistics(model: nn.Module, bns: list, g: torch.Generator) -> None:
    draw = dict(generator=g, dtype=torch.float64)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, that batch's statistics
    model.train()(torch.randn(CALIBRATION_SHAPE, **draw))
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        var = bn.running_var
        bn.running_mean.add_(0.1 * var.sqrt() * torch.randn(var.shape, **draw))
        var.copy_(var * torch.exp(0.2 * torch.randn(var.shape, **draw)) + 0.1 * var.mean())


def seeded_model(name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Model ``name`` (eval mode, ``dtype``) in the seeded state of the module docstring. The
    global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(SEED)
        model = atrous.create_model(name, num_classes=NUM_CLASSES, **OVERRIDES.get(name, {})).double()
        g = torch.Generator().manual_seed(SEED + 1)
        _calibrate_statistics(model, _randomize_affine(model, g), g)
    return model.to(dtype).eval()


def reference_outputs(name: str) -> dict[str, torch.Tensor]:
    """What the stored file should hold: the float64 model's probe outputs, cast to float32."""
    return {key: y.float() for key, y in probe_outputs(seeded_model(name, torch.float64), name).items()}


def _reach(module: nn.Module) -> tuple[int, int]:
    """How far (rows, columns) from its centre a conv's kernel reads."""
    if isinstance(module, FractionalDilatedConv):
        r = math.ceil(float(module.rate))
        return r, r
    (kh, kw), (dh, dw) = module.kernel_size, module.dilation
    return dh * (kh // 2), dw * (kw // 2)


def short_dilations(model: nn.Module, name: str) -> list[str]:
    """The dilated convs (rate > 1) whose reach along the long side of the wide or tall probe is
    not inside their input feature map, so that the probe could not tell that rate from a larger
    one. Empty when ``LONG_SIDE[name]`` is long enough."""
    short = []

    def check(key: str, module_name: str, module: nn.Module, x: torch.Tensor) -> None:
        reach_h, reach_w = _reach(module)
        reach, side = (reach_w, x.shape[-1]) if key == "wide" else (reach_h, x.shape[-2])
        dilated = isinstance(module, FractionalDilatedConv) or max(module.dilation) > 1
        if dilated and reach > 0 and side <= reach:
            short.append(f"{module_name} ({key}: reach {reach}, feature side {side})")

    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, FractionalDilatedConv))]
    for key, x in probe_inputs(name, next(model.parameters()).dtype).items():
        if key == "logits":
            continue
        hooks = [m.register_forward_pre_hook(lambda mod, args, n=n, key=key: check(key, n, mod, args[0]))
                 for n, m in convs]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in hooks:
                h.remove()
    return short


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.safetensors"


def load_golden(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = golden_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no golden output for {name!r}; run "
                                f"scripts/regenerate_golden.py --write (and review the change)")
    return load_file(path)


def load_stored_input() -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(INPUT_FILE)["input"]


def metadata(name: str | None = None) -> dict[str, str]:
    """What produced a golden file, stored in its header."""
    meta = {"seed": str(SEED), "input_shape": "x".join(map(str, INPUT_SHAPE)), "torch": torch.__version__,
            "computed": "float64 (state and forward), stored as float32"}
    if name is not None:
        meta.update(model=name, num_classes=str(NUM_CLASSES), overrides=json.dumps(OVERRIDES.get(name, {})),
                    long_probes=f"{LONG_SHORT_SIDE}x{LONG_SIDE[name]} and its transpose, logits pooled {POOL}x{POOL}")
    return meta


def relative_error(got: torch.Tensor, golden: torch.Tensor) -> float:
    """max |got - golden| / RMS(golden): the measure ``TOLERANCE`` bounds."""
    if tuple(got.shape) != tuple(golden.shape):
        raise ValueError(f"output of shape {tuple(got.shape)}, golden {tuple(golden.shape)}")
    got, golden = got.detach().double().cpu(), golden.double()
    return float((got - golden).abs().max() / golden.square().mean().sqrt())
