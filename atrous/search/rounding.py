"""From searched fractional rates to the integer dilations RegSeg retrains (Sec 3.4), with the
field-of-view bound of Sec 3.1 (Eq. 3) checked on both."""
from __future__ import annotations

import math
import warnings
from typing import Sequence

from torch import nn

from ..errors import UserError
from ..analysis import field_of_view, fov_table


class DilationBoundWarning(UserWarning):
    """A dilation rate breaks ``r <= k / s`` (RegSeg Eq. 3): the dilated conv leaves gaps."""


def round_block(rates: Sequence[float]) -> tuple[int, ...]:
    """RegSeg Sec 3.4: a block with rates ``r1, r2`` becomes ``floor(min), ceil(max)`` "so that
    the converted model maintains the same field-of-view as the original one and preserves the
    local details". Returned smallest first, as in Table 2.

    Cases the paper does not cover (docs/deviations.md): one branch -> ``ceil(r)`` (keeps the
    field of view); more than two -> the smallest floors, the largest ceils, the others round half
    up; every result is at least 1 (a dilation of 0 is no convolution RegSeg can build).
    """
    values = sorted(float(r) for r in rates)
    if not values:
        raise UserError("rates: a block needs at least one rate")
    if not all(math.isfinite(r) for r in values):
        raise UserError(f"rates: expected finite numbers, got {tuple(rates)}")
    if len(values) == 1:
        out = [math.ceil(values[0])]
    else:
        out = [math.floor(values[0])] + [math.floor(r + 0.5) for r in values[1:-1]] + [math.ceil(values[-1])]
    return tuple(max(1, r) for r in out)


def round_dilations(rates: Sequence[Sequence[float]]) -> list[tuple[int, ...]]:
    """:func:`round_block` over every searched block."""
    return [round_block(block) for block in rates]


def bound_violations(model: nn.Module) -> list[str]:
    """One message per step of ``model.fov_path()`` whose dilations break ``r <= k / s``."""
    return [f"{row.name}: dilation {max(row.dilations):g} > k/s = {row.fov_before:g}/{row.stride_before}"
            f" = {row.bound:.3g} (RegSeg Eq. 3: the dilated conv leaves gaps)"
            for row in fov_table(model) if not row.holds]


def warn_bound(model: nn.Module, label: str) -> list[str]:
    """Issue a :class:`DilationBoundWarning` for every violation of Eq. 3 and return them."""
    messages = bound_violations(model)
    for message in messages:
        warnings.warn(f"{label}: {message}", DilationBoundWarning, stacklevel=2)
    return messages


def describe(rates: Sequence[Sequence[float]]) -> str:
    """``(1,1)+(1,2.372)+...`` as in Table 2 (fractional rates with 3 decimals)."""
    return "+".join("(" + ",".join(f"{r:g}" if float(r).is_integer() else f"{r:.3f}" for r in block) + ")"
                    for block in rates)


def fov_report(fractional: nn.Module, rounded: nn.Module) -> str:
    """Field of view of the searched (fractional) model and of its rounded integer version."""
    return (f"field of view: searched (fractional) {field_of_view(fractional):.1f}, "
            f"rounded (integer) {field_of_view(rounded)}")
