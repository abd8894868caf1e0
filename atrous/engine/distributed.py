"""Many processes: the same ``atrous train`` command under ``torchrun --nproc_per_node N`` trains with
DistributedDataParallel (NCCL on CUDA, gloo on CPU). With ``train.sync_bn`` BatchNorm statistics
span every process (torch's SyncBatchNorm on CUDA, :mod:`atrous.engine.sync_batchnorm` elsewhere)
and, with the losses' global normalisation (:mod:`atrous.engine.losses`), N processes of batch b
compute what one process of batch N x b computes."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT); a single process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=world)
    return info


def pick_device(name: str, info_local_rank: int | None = None) -> torch.device:
    """``auto`` -> the local CUDA device if there is one, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device: {name!r} requested but CUDA is not available")
        local = int(os.environ.get("LOCAL_RANK", info_local_rank or 0))
        device = torch.device("cuda", device.index if device.index is not None else local)
        torch.cuda.set_device(device)
    return device


def group_size(group=None) -> int:
    """Processes in ``group`` (the default group when None); 1 when no process group is running."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def sum_over_processes(values: torch.Tensor, group=None) -> torch.Tensor:
    """``values`` summed over the processes of ``group`` (in place; itself in a single process)."""
    if group_size(group) > 1:
        dist.all_reduce(values, group=group)
    return values


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool) -> nn.Module:
    """DistributedDataParallel around ``model`` under many processes, its BatchNorm layers first
    synchronized when ``sync_bn``; ``model`` itself in a single process. The conversion keeps the
    parameter tensors, so an optimizer built before it is unaffected."""
    if not info.enabled:
        return model
    if sync_bn:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # torch's SyncBatchNorm is GPU-only
            from .sync_batchnorm import convert_sync_batchnorm

            model = convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def mean_over_processes(value: torch.Tensor, info: DistInfo) -> float:
    """The mean of a scalar over the processes (NaN or inf when it is so on any process, so that
    all stop together). With the losses' global normalisation, the mean of the processes' losses is
    the loss of the global batch."""
    total = value.detach().reshape(1).to(torch.float64, copy=True)  # all_reduce works in place
    if info.enabled:
        dist.all_reduce(total)
    return float(total.item()) / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
