"""The typed recipe: one dataclass per section, the single source of every default and type.

A recipe file is merged over :data:`atrous.engine.config.DEFAULTS` (these dataclasses as a
mapping) and read once into a :class:`RunSettings` by :func:`settings_from_config`, which checks
every value's type and names the key of a wrong one; the trainer, the losses and the optimizer use
attributes, never string keys.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from ..errors import UserError


@dataclass(frozen=True)
class ModelSettings:
    name: str = "regseg"
    options: dict = field(default_factory=dict)  # overrides of the model's config dataclass
    # weights to start from: a path (every tensor but a classifier of another class count), or
    # {path: FILE, part: encoder} (that part only, what fits by name and shape; docs/training.md)
    init: Union[str, dict, None] = None


@dataclass(frozen=True)
class EMASettings:  # RegSeg Sec 4.2
    enabled: bool = False
    alpha: float = 0.0031
    every: int = 32


@dataclass(frozen=True)
class PreciseBNSettings:  # the official RegSeg trainer's bn_precise_stats (docs/training.md)
    batches: int = 0  # training batches whose statistics replace BatchNorm's; 0 = off


@dataclass(frozen=True)
class TrainSettings:
    split: str = "train"
    batch_size: int = 8  # per process: the global batch is batch_size x processes
    sync_bn: bool = False  # many processes: BatchNorm statistics over the global batch (any backend)
    epochs: int | None = None  # give epochs or max_iters (max_iters wins when both are set)
    max_iters: int | None = None
    num_workers: int = 0
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_bn: bool = False  # RegSeg Sec 4.2: no weight decay on BatchNorm parameters
    decay_bias: bool = True  # set False to exclude every bias from weight decay as well
    poly_power: float = 0.9
    warmup_iters: int = 0
    warmup_factor: float = 0.1  # linear warmup from warmup_factor * lr to lr
    grad_clip: float | None = None  # max global gradient norm, or null
    precision: str = "auto"  # auto (fp16 on CUDA, bf16 on a CPU with bf16 units, else fp32) | fp32 | fp16 | bf16
    channels_last: Union[str, bool] = "auto"  # auto (on with bf16/fp16, off in fp32) | true | false
    ema: EMASettings = field(default_factory=EMASettings)
    precise_bn: PreciseBNSettings = field(default_factory=PreciseBNSettings)
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int | None = None  # iterations between evaluations on eval.split, or null


@dataclass(frozen=True)
class LossSettings:
    name: str = "ce"  # ce | ohem_regseg | ohem_dsnet | bootstrap (classification: ce)
    threshold: float | None = None  # pixel-loss threshold (ohem_regseg, bootstrap: 0.3) or probability (ohem_dsnet: 0.9)
    keep_fraction: float | None = None  # ohem_regseg: at least this fraction of the batch's pixels (1/16)
    min_kept: int | None = None  # ohem_dsnet: 131072 per process; bootstrap: 4096 per image
    main_weight: float = 1.0  # weight of the main output's loss (DSNet official: 0.6)
    aux_weights: list = field(default_factory=list)  # one weight per auxiliary head, in output order
    aux_loss: str = "same"  # loss of the auxiliary heads: same as the main one, or a loss name
    label_smoothing: float = 0.0  # classification pretraining only
    # per-class loss weights: null | a list (one per class) | enet (1 / ln(1.02 + class share), ENet)
    class_weights: Union[list, str, None] = None


@dataclass(frozen=True)
class EvalSettings:
    split: str = "val"
    batch_size: int = 1
    shorter_side: int | None = None  # RegSeg: resize the image so its shorter side is this, then upsample
    select: str = "final"  # final | best (best of periodic evaluations: reported as such)


@dataclass(frozen=True)
class RunSettings:
    recipe: str | None = None  # set by load_config: the bundled name or the path the run was made from
    task: str = "segmentation"  # segmentation | classification (ImageNet-style encoder pretraining)
    seed: int = 0  # RegSeg Sec 4.3: seed before initialization; reseeded with seed + epoch per epoch
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    model: ModelSettings = field(default_factory=ModelSettings)
    data: dict = field(default_factory=lambda: {"dataset": "toy"})  # checked by atrous.data
    train: TrainSettings = field(default_factory=TrainSettings)
    loss: LossSettings = field(default_factory=LossSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)


def defaults() -> dict[str, Any]:
    """:class:`RunSettings` as the nested mapping recipes are merged over."""
    return dataclasses.asdict(RunSettings())


def settings_from_config(config: dict) -> RunSettings:
    """The typed settings of a resolved recipe mapping; a value of the wrong type raises a
    UserError naming its key (``train.lr: expected a number, got 'abc'``)."""
    return _build(RunSettings, config, "")


def _build(cls, mapping: dict, where: str):
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        value = mapping.get(f.name, _default(f))
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise UserError(f"{path}: expected a mapping, got {value!r}")
            value = _build(kind, value, path)
        else:
            value = _checked(value, kind, path)
        values[f.name] = value
    return cls(**values)


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _checked(value, kind, path: str):
    allowed = typing.get_args(kind) if typing.get_origin(kind) in (Union, types.UnionType) else (kind,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is bool and isinstance(value, bool):
            return value
        if t in (int, str, dict, list) and isinstance(value, t) and not isinstance(value, bool):
            return value
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping",
             list: "a list", type(None): "null"}
    expected = " or ".join(names.get(t, getattr(t, "__name__", str(t))) for t in allowed)
    raise UserError(f"{path}: expected {expected}, got {value!r}")
