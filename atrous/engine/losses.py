"""Segmentation losses: cross-entropy with ignore and the three papers' forms of hard-pixel mining.

* :class:`RegSegOHEM` - RegSeg Sec 4.2: average the pixel losses above 0.3, or the top 1/16 of the
  batch's pixels when fewer than that are above it (official ``BootstrappedCE``).
* :class:`DSNetOHEM` - DSNet Sec 4.2 via its official config (``OHEMTHRES 0.9``, ``OHEMKEEP
  131072``): keep the pixels whose probability of the true class is below 0.9, and at least
  ``min_kept`` of the least confident ones (HRNet/PIDNet ``OhemCrossEntropy``).
* :class:`Bootstrap` - FASSD-Net Sec IV-A, "online bootstrapping" (Wu et al. 2016) as its official
  config (``min_K 4096``, ``loss_th 0.3``): per image, the pixel losses above 0.3, or the
  ``min_kept`` largest; the per-image means are averaged.
* :class:`SegLoss` sums ``main_weight`` x the main loss and ``aux_weights[i]`` x the loss of
  auxiliary head ``i`` (DSNet's official training: 0.6 x OHEM(main) + 0.2 x CE(aux_p) + 0.2 x
  CE(aux_d)).

Under many processes each loss is a mean over the global batch: a process computes its part (the
sum of its selected terms and their number, :class:`PartialLoss`) and :func:`global_means` divides
by the number summed over the processes, so N processes of batch b train as one of batch N x b
(docs/training.md, "Many processes"; what stays per process in the hard-pixel losses is said in
each class).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models.base import split_outputs
from .distributed import group_size, sum_over_processes


def at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in float32; float32 and float64 ones as they are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def pixel_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel cross-entropy (0 at ignored pixels), N x H x W, computed in float32 at least;
    with ``weight``, each pixel's loss times its class's weight."""
    logits = at_least_float32(logits)
    if weight is not None:
        weight = weight.to(logits.device, logits.dtype)
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")


def enet_weights(pixel_counts: torch.Tensor, c: float = 1.02) -> torch.Tensor:
    """ENet's class weights (Paszke et al. 2016, Sec 4): ``1 / ln(c + p_class)``, ``p`` the class's
    share of the labelled training pixels; rare classes (pole, sign, bicyclist) weigh up to
    ~50x more than ``c = 1.02`` allows the commonest."""
    share = pixel_counts.double() / pixel_counts.sum().clamp(min=1)
    return (1.0 / torch.log(c + share)).float()


class PartialLoss(NamedTuple):
    """One process's part of a mean: the sum of its selected terms (pixel losses, or per-image
    means) and their number (a float64 scalar)."""

    total: torch.Tensor
    count: torch.Tensor


def global_means(parts: Sequence[PartialLoss]) -> list[torch.Tensor]:
    """Each part's total over its count summed over every process, times the number of processes:
    this process's share of the mean over the global batch. DistributedDataParallel averages the
    processes' gradients, so the gradient is exactly that of the global-batch mean, and the mean of
    the processes' values is its value. One all-reduce for all parts; a single process gets
    ``total / count``. A mean over nothing is 0 (with a graph)."""
    counts = torch.stack([part.count.to(part.total.device, torch.float64).reshape(()) for part in parts])
    counts = sum_over_processes(counts)
    per_process = counts.clamp(min=1.0) / group_size()
    return [part.total / share.to(part.total.dtype) for part, share in zip(parts, per_process)]


class MeanOverProcesses(nn.Module):
    """Base of the losses: a subclass defines ``partial(logits, target) -> PartialLoss``; the value
    is this process's share of the global-batch mean (:func:`global_means`), which in a single
    process is the mean itself. ``weight`` (``loss.class_weights``) scales each pixel's loss by its
    class's weight; the means stay over pixels."""

    weight: torch.Tensor | None = None

    def forward(self, logits, target):
        return global_means([self.partial(logits, target)])[0]


def _count(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


class CrossEntropy(MeanOverProcesses):
    """Mean cross-entropy over the pixels that are not ``ignore_index`` (of the global batch)."""

    def __init__(self, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = ignore_index

    def partial(self, logits, target):
        losses = pixel_ce(logits, target, self.ignore_index, self.weight)
        return PartialLoss(losses.sum(), _count((target != self.ignore_index).sum()))


class RegSegOHEM(MeanOverProcesses):
    """RegSeg Sec 4.2: mean of the pixel losses > ``threshold`` when more than ``keep_fraction`` of
    the batch's pixels pass it, else the mean of the top ``keep_fraction`` of pixel losses. As in
    the official code the fraction counts every pixel of the batch, ignored ones included. Under
    many processes the choice between the two is made on the global batch (one small all-reduce),
    so the first form is the global mean; the top fraction is taken per process."""

    def __init__(self, ignore_index: int = 255, threshold: float = 0.3, keep_fraction: float = 1 / 16):
        super().__init__()
        if not 0 < keep_fraction <= 1:
            raise UserError(f"loss.keep_fraction: expected a value in (0, 1], got {keep_fraction}")
        self.ignore_index, self.threshold, self.keep_fraction = ignore_index, threshold, keep_fraction

    def partial(self, logits, target):
        losses = pixel_ce(logits, target, self.ignore_index, self.weight).flatten()
        k = max(1, int(losses.numel() * self.keep_fraction))
        hard = losses > self.threshold
        hard_count, global_k = sum_over_processes(_count([int(hard.sum()), k]).to(losses.device)).tolist()
        if hard_count > global_k:
            return PartialLoss(losses[hard].sum(), _count(hard.sum()))
        return PartialLoss(torch.topk(losses, k).values.sum(), _count(k))


class DSNetOHEM(MeanOverProcesses):
    """DSNet (official config, HRNet-style OHEM): among non-ignored pixels, sort by the softmax
    probability of the true class; the cut is ``max(threshold, p[min_kept])``; average the losses of
    the pixels whose probability is below the cut. The selection is per process (``min_kept``
    counts a process's pixels, as in the official multi-GPU code); the mean is over the pixels
    selected on every process."""

    def __init__(self, ignore_index: int = 255, threshold: float = 0.9, min_kept: int = 131072):
        super().__init__()
        self.ignore_index, self.threshold, self.min_kept = ignore_index, threshold, max(1, int(min_kept))

    def partial(self, logits, target):
        logits = at_least_float32(logits)
        losses = pixel_ce(logits, target, self.ignore_index, self.weight).flatten()
        valid = (target != self.ignore_index).flatten()
        if not valid.any():
            return PartialLoss(logits.sum() * 0.0, _count(0))
        with torch.no_grad():  # the probabilities only select pixels
            safe = target.clone()
            safe[safe == self.ignore_index] = 0
            prob = logits.softmax(1).gather(1, safe.unsqueeze(1)).flatten()[valid]
            prob, order = prob.sort()
        cut = max(float(prob[min(self.min_kept, prob.numel() - 1)]), self.threshold)
        selected = prob < cut
        return PartialLoss(losses[valid][order][selected].sum(), _count(selected.sum()))


class Bootstrap(MeanOverProcesses):
    """FASSD-Net (official config): per image, the mean of the pixel losses > ``threshold`` if the
    ``min_kept``-th largest loss passes it, else the mean of the ``min_kept`` largest; averaged over
    the images of the (global) batch. The selection is per image, so it does not depend on how the
    batch is split between processes."""

    def __init__(self, ignore_index: int = 255, threshold: float = 0.3, min_kept: int = 4096):
        super().__init__()
        self.ignore_index, self.threshold, self.min_kept = ignore_index, threshold, max(1, int(min_kept))

    def partial(self, logits, target):
        per_image = pixel_ce(logits, target, self.ignore_index, self.weight).flatten(1)
        out = []
        for losses in per_image:
            ranked = losses.sort(descending=True).values
            k = min(self.min_kept, ranked.numel())
            if k < ranked.numel() and ranked[k] > self.threshold:
                out.append(ranked[ranked > self.threshold].mean())
            else:
                out.append(ranked[:k].mean())
        return PartialLoss(torch.stack(out).sum(), _count(len(out)))


def build_criterion(name: str, ignore_index: int = 255, threshold=None, keep_fraction=None,
                    min_kept=None) -> nn.Module:
    """The loss named by ``loss.name`` with each paper's defaults for unset options."""
    if name == "ce":
        return CrossEntropy(ignore_index)
    if name == "ohem_regseg":
        return RegSegOHEM(ignore_index, 0.3 if threshold is None else threshold,
                          1 / 16 if keep_fraction is None else keep_fraction)
    if name == "ohem_dsnet":
        return DSNetOHEM(ignore_index, 0.9 if threshold is None else threshold,
                         131072 if min_kept is None else min_kept)
    if name == "bootstrap":
        return Bootstrap(ignore_index, 0.3 if threshold is None else threshold,
                         4096 if min_kept is None else min_kept)
    raise UserError(f"loss.name: unknown loss {name!r}; expected ce, ohem_regseg, ohem_dsnet or bootstrap")


class SegLoss(nn.Module):
    """``main_weight * criterion(main) + sum_i aux_weights[i] * aux_criterion(aux_i)`` over a
    model's training output (a tensor, or a tuple ``(logits, aux_1, ...)`` as in
    atrous.models.base); ``aux_criterion`` defaults to ``criterion``. Both are
    :class:`MeanOverProcesses` losses; every head's count goes into one all-reduce."""

    def __init__(self, criterion: MeanOverProcesses, aux_weights: Sequence[float] = (), main_weight: float = 1.0,
                 aux_criterion: MeanOverProcesses | None = None):
        super().__init__()
        self.criterion = criterion
        self.aux_criterion = aux_criterion if aux_criterion is not None else criterion
        self.aux_weights = [float(w) for w in aux_weights]
        self.main_weight = float(main_weight)

    def forward(self, output, target):
        main, aux = split_outputs(output)
        if len(aux) != len(self.aux_weights):
            raise UserError(f"loss.aux_weights: the model returns {len(aux)} auxiliary output(s) in "
                             f"training but {len(self.aux_weights)} weight(s) are set")
        heads = [(self.main_weight, self.criterion, main)]
        heads += [(weight, self.aux_criterion, logits) for weight, logits in zip(self.aux_weights, aux) if weight]
        means = global_means([criterion.partial(logits, target) for _, criterion, logits in heads])
        return sum(weight * mean for (weight, _, _), mean in zip(heads, means))


def loss_from_config(loss, ignore_index: int = 255, class_weights: torch.Tensor | None = None) -> SegLoss:
    """The :class:`SegLoss` of a recipe's ``loss`` section (a :class:`~atrous.engine.settings.LossSettings`),
    with ``class_weights`` (one per class, or None) on every head."""
    def make(name):
        criterion = build_criterion(name, ignore_index, loss.threshold, loss.keep_fraction, loss.min_kept)
        criterion.weight = class_weights
        return criterion

    aux = None if loss.aux_loss in (None, "same", loss.name) else make(loss.aux_loss)
    return SegLoss(make(loss.name), loss.aux_weights or (), loss.main_weight, aux)
