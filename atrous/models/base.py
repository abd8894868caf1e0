"""The one model contract every network in atrous follows.

* ``model(x)`` takes ``x`` of shape N x 3 x H x W (float) with H, W >= ``min_size``.
* In eval mode it returns float logits N x C x H x W at the input's H, W.
* In training mode it returns the same logits, or, for a network with auxiliary heads (DSNet),
  a tuple ``(logits, aux_1, ..., aux_k)``: the main logits first, every element N x C x H x W at
  the input size. :func:`split_outputs` turns either form into ``(logits, [aux...])``.
* Networks whose internal strides need particular sizes pad inside and crop the logits back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import nn

from ..errors import UserError


class FovStep(NamedTuple):
    """One convolution (or set of parallel convolutions) on the main path of an encoder, for the
    field-of-view rule of RegSeg Sec 3.1: kernel ``kernel``, stride ``stride``, and the dilation of
    each parallel branch (a 3x3 conv with dilation r counts as a kernel of 2r + 1)."""

    name: str
    kernel: int
    stride: int
    dilations: tuple = (1,)


class SegmentationModel(nn.Module):
    """Base class: input checks, the training/eval output contract and the field-of-view path.

    Subclasses implement :meth:`forward_logits` (logits at the input size, plus auxiliary logits in
    training mode) and :meth:`fov_path`.
    """

    min_size: int = 32
    num_classes: int
    #: attribute names of submodules used only in training (auxiliary heads); they are not part
    #: of the eval model and not counted in its parameters (see ``atrous.analysis.count_params``)
    training_only: tuple[str, ...] = ()
    #: state-dict key of the final classifier's weight (its first dimension is the class count)
    classifier_key: str = "classifier.weight"
    #: named parts for partial loading (``atrous.weights.load_state(..., part="encoder")``): key
    #: prefixes of each part; "encoder" is what ImageNet pretraining initialises
    parts: dict[str, tuple[str, ...]] = {}

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        return self.forward_logits(x)

    def forward_logits(self, x: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def fov_path(self) -> list[FovStep]:  # pragma: no cover - abstract
        """The encoder's main path as :class:`FovStep` entries, input to output."""
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"x: expected a tensor N x 3 x H x W, got {shape}")
        if x.shape[1] != 3:
            raise UserError(f"x: expected 3 input channels (RGB), got {x.shape[1]}")
        h, w = x.shape[-2:]
        if h < self.min_size or w < self.min_size:
            raise UserError(f"x: input {h}x{w} is too small; H and W must be >= {self.min_size}")


def split_outputs(output) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(logits, [aux_logits...])`` from what a model returned in either mode."""
    if isinstance(output, torch.Tensor):
        return output, []
    main, *aux = output
    return main, list(aux)


@dataclass(frozen=True)
class ModelCard:
    """What the paper reports for a variant (torchvision-style weight/model metadata).

    ``flops`` is in the paper's own unit and convention, named by ``flops_convention``; the
    numbers atrous measures sit beside these in ``atrous models`` and docs/models.md.
    """

    paper: str
    reference: str  # section / table
    params_m: float | None = None
    flops_g: float | None = None
    flops_convention: str = ""  # how the paper counts, in words
    flops_rule: str = ""  # key of atrous.analysis.CONVENTIONS that reproduces it ("fvcore", ...)
    flops_divisor: float = 1e9  # the paper's "G": 1e9, or 2**30 where its script divides so (DSNet)
    flops_resolution: tuple[int, int] | None = None
    miou: float | None = None
    miou_split: str = ""
    dataset: str = ""
    fps: float | None = None
    gpu: str = ""
    notes: str = ""


def check_sequence(name: str, value: Sequence, length: int) -> tuple:
    """A tuple of exactly ``length`` entries, or a UserError naming the argument."""
    value = tuple(value)
    if len(value) != length:
        raise UserError(f"{name}: expected {length} entries, got {len(value)}: {value}")
    return value
