"""Many processes: the same ``atrous train`` command under ``torchrun --nproc_per_node N`` trains with
DistributedDataParallel (NCCL on CUDA, gloo on CPU); SyncBatchNorm is optional."""
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


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool) -> nn.Module:
    if not info.enabled:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise UserError("model.sync_bn: SyncBatchNorm works on CUDA only; set model.sync_bn=false on CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_finite(value: torch.Tensor, info: DistInfo) -> bool:
    """Whether ``value`` is finite on every process (so all stop together on a NaN)."""
    flag = torch.isfinite(value.detach()).all().float().reshape(1)
    if info.enabled:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def mean_over_processes(value: float, info: DistInfo, device: torch.device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
