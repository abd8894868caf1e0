"""What each process trains on in each epoch (RegSeg Sec 4.3: reproducible order and augmentation).

The order of an epoch is drawn from ``seed + epoch`` alone (a permutation, or the class-uniform
sampler's draw, RegSeg Sec 4.2), cut to whole global batches and dealt to the processes by
:func:`atrous.data.sampler.shard`; every sample gets its own augmentation seed from its position,
so a sample looks the same whatever the process count, the data workers or a resume.
"""
from __future__ import annotations

import torch

from ..data.sampler import shard
from . import checkpoint as ckpt


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A distinct seed for the ``position``-th sample of ``epoch`` (independent of processes,
    workers and resuming)."""
    return (int(seed) * 1_000_003 + epoch * 2**24 + position) % 2**63


class EpochPlan:
    """The samples of each epoch, as ``(item, seed)`` of this process, in order."""

    def __init__(self, dataset, batch_size: int, world_size: int, rank: int, seed: int, data: dict | None = None):
        self.dataset, self.batch_size, self.world, self.rank, self.seed = dataset, batch_size, world_size, rank, seed
        self.sampler = None
        data = data or {}
        if data.get("class_uniform"):  # RegSeg Sec 4.2: class-uniform sampling (data.class_uniform percent)
            from ..data import ClassUniformSampler

            self.sampler = ClassUniformSampler(dataset, float(data["class_uniform"]), len(dataset), seed,
                                               tile_size=int(data.get("tile_size", 1024)), progress=rank == 0,
                                               cache_dir=data.get("cache_dir"))
        self.global_batch = batch_size * world_size
        self.iters_per_epoch = max(1, len(dataset) // self.global_batch)

    def items(self, epoch: int) -> list:
        """This process's samples of ``epoch``, as ``(item, seed)`` in order."""
        if self.sampler is not None:  # SampleRequests with their own seeds
            order = self.sampler.epoch_requests(epoch)
        else:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(self.dataset), generator=g).tolist()
        total = self.iters_per_epoch * self.global_batch
        positions = shard(list(range(total)), total, self.rank, self.world)
        mine = shard(order, total, self.rank, self.world)
        return [(item, sample_seed(self.seed, epoch, p)) for item, p in zip(mine, positions)]


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[SampleRequest(index, seed)]`` for each planned sample; the global generators are
    seeded per sample too and restored afterwards, so augmentations that use them stay
    reproducible without disturbing the training loop's generators."""

    def __init__(self, dataset, items):
        self.dataset, self.items = dataset, items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from ..data import SampleRequest

        item, seed = self.items[i]
        if isinstance(item, SampleRequest):  # the class-uniform sampler's requests keep their seeds
            request = item if item.seed is not None else item._replace(seed=seed)
        else:
            request = SampleRequest(int(item), seed)
        saved = ckpt.rng_state()
        ckpt.seed_everything(seed)
        try:
            return self.dataset[request]
        finally:
            ckpt.set_rng_state(saved)
