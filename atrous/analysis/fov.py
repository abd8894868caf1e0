"""Field of view by the FCN rule (RegSeg Sec 3.1, Eq. 1-3)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class FovRow:
    name: str
    kernel: int
    stride: int
    dilations: tuple
    fov_before: float  # k of Eq. 1 before this step
    stride_before: int  # s of Eq. 2 before this step
    fov_after: float
    bound: float  # k / s of Eq. 3 for this step's dilations
    holds: bool  # every dilation r of the step satisfies r <= k / s


def fov_table(model: nn.Module) -> list[FovRow]:
    """One row per step of ``model.fov_path()``.

    A k x k conv with dilation r counts as a kernel of ``r * (k - 1) + 1`` (2r + 1 for 3x3);
    parallel branches count as their largest. Eq. 1: ``k <- k + (k' - 1) * s``; Eq. 2:
    ``s <- s * s'``; Eq. 3: the dilated conv leaves no gaps when ``r <= k / s``.
    Fractional dilations (dilation search) give a fractional field of view.
    """
    if not hasattr(model, "fov_path"):
        raise TypeError(f"{type(model).__name__} does not describe its encoder path (fov_path)")
    k, s = 1, 1
    rows = []
    for step in model.fov_path():
        rates = tuple(float(r) if not float(r).is_integer() else int(r) for r in step.dilations)
        effective = max(r * (step.kernel - 1) + 1 for r in rates)
        bound = k / s
        new_k = k + (effective - 1) * s
        rows.append(FovRow(step.name, step.kernel, step.stride, rates, k, s, new_k, bound,
                           all(r <= bound for r in rates)))
        k, s = new_k, s * step.stride
    return rows


def field_of_view(model: nn.Module):
    """The encoder's field of view in input pixels (int; float for fractional dilations)."""
    rows = fov_table(model)
    fov = rows[-1].fov_after if rows else 1
    return int(fov) if float(fov).is_integer() else fov
