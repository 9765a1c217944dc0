"""The in-memory fast path: a split held as one uint8 tensor on the training device, batched augmentation.

No DataLoader and no worker processes (they would compete with training for the cores): each batch is an
index slice of a per-epoch permutation, augmented as a whole and normalised into float32 on the device.
Under DDP the permutation is padded to a multiple of the world size and dealt out by rank, as
``DistributedSampler`` does; evaluation shards contiguously without padding so metrics summed over ranks
are exact.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from effconv.data.transforms import to_device
from effconv.errors import UserError
from effconv.threads import torch_threads


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, batch, rank): independent streams, no shared state."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts])
        .generate_state(2, np.uint32)
        .astype(np.uint64)
        .dot([1 << 31, 1])
    ) & ((1 << 63) - 1)


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """Run a CPU batch's augmentation on one thread, then give training its threads back.

    A batch is ~1 MB of uint8, too little to gain from a thread team; on a busy machine a team costs much
    more than it gains, because OpenMP threads spin-wait for a descheduled sibling at every operation
    (measured on 2 shared cores: 42-50k img/s on one thread, 3-5k on two).
    """
    with torch_threads(1 if device.type == "cpu" else None):
        yield


class EpochOrder:
    """Which samples this process sees in an epoch, in which batches: a function of (seed, epoch, rank) only.

    Training: a permutation from (seed, epoch), padded to a multiple of the world size by repeating its start
    and dealt out by rank (as ``DistributedSampler``), cut into full batches (drop_last: every update sees a
    full batch). Evaluation: a contiguous shard per rank without padding, so metrics summed over ranks are
    exact, and a short last batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, train: bool, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.train = n, batch_size, seed, train
        self.rank, self.world_size = rank, world_size
        if train:
            self.per_rank = math.ceil(n / world_size)
            self.num_batches = self.per_rank // batch_size
            if self.num_batches == 0:
                raise UserError(
                    f"recipe.batch_size={batch_size} is larger than the {self.per_rank} training "
                    "images per process; lower recipe.batch_size"
                )
        else:
            bounds = [n * r // world_size for r in range(world_size + 1)]
            self.shard = (bounds[rank], bounds[rank + 1])
            self.per_rank = self.shard[1] - self.shard[0]
            self.num_batches = math.ceil(self.per_rank / batch_size)

    def __len__(self) -> int:
        return self.num_batches

    @property
    def num_samples(self) -> int:
        return self.num_batches * self.batch_size if self.train else self.per_rank

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices of ``epoch``, in order (batch b is the b-th slice of batch_size)."""
        if not self.train:
            return torch.arange(*self.shard)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        perm = torch.randperm(self.n, generator=generator)
        total = self.per_rank * self.world_size
        if total > len(perm):  # pad by repeating the start, as DistributedSampler does
            perm = torch.cat([perm, perm[: total - len(perm)]])
        return perm[self.rank :: self.world_size]


class InMemoryLoader:
    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        transform,
        mean,
        std,
        device: torch.device,
        seed: int,
        train: bool,
        rank: int = 0,
        world_size: int = 1,
        memory_format=torch.contiguous_format,
    ):
        self.device = torch.device(device)
        # stored once in the training layout: a per-batch uint8 NCHW -> float NHWC conversion transposes with
        # 3 channels innermost, ~7 ms per 8 images at 224 px on CPU (benchmarks/bench_loop.py)
        self.images = images.to(self.device).contiguous(memory_format=memory_format)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.transform = transform
        self.train = train
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.memory_format = memory_format
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(shape) * 255
        self.inv_std = 1 / (torch.tensor(std, dtype=torch.float32, device=self.device).view(shape) * 255)
        self._row_stats = None  # mean and 1/std repeated along an image row (channels_last)
        self.order = EpochOrder(len(self.images), batch_size, seed, train, rank, world_size)

    def __len__(self) -> int:
        return len(self.order)

    @property
    def num_samples(self) -> int:
        return self.order.num_samples

    def batches(self, epoch: int, start: int = 0):
        order = to_device(self.order.indices(epoch), self.device)
        for b in range(start, len(self.order)):
            with one_cpu_thread(self.device):
                batch = self._batch(order[b * self.batch_size : (b + 1) * self.batch_size], epoch, b)
            yield batch

    def _batch(self, idx: torch.Tensor, epoch: int, b: int):
        images = self._select(idx)
        # evaluation draws from its own fixed stream too, so it never touches the global RNG
        stream = (epoch, b, self.rank) if self.train else (-1, b + self.order.shard[0])
        images = self.transform(images, torch.Generator().manual_seed(derive_seed(self.seed, *stream)))
        return self._normalise(images), self.labels.index_select(0, idx)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float (x - mean) / std in the training layout.

        channels_last: cast the NHWC bytes as they lie and normalise each (H, W*C) row against mean/std
        repeated along it; broadcasting a (1, C, 1, 1) tensor over channels_last data runs 5x slower on the
        CPU (C is innermost), as does casting NCHW bytes into a channels_last float tensor (a transpose)."""
        if self.memory_format != torch.channels_last:
            return images.to(torch.float32).sub_(self.mean).mul_(self.inv_std)
        n, c, h, w = images.shape
        rows = images.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(n, h, w * c)
        if self._row_stats is None or self._row_stats[0].numel() != w * c:
            self._row_stats = (self.mean.view(c).repeat(w), self.inv_std.view(c).repeat(w))
        x = rows.to(torch.float32).sub_(self._row_stats[0]).mul_(self._row_stats[1])
        return x.view(n, h, w, c).permute(0, 3, 1, 2)

    def _select(self, idx: torch.Tensor) -> torch.Tensor:
        """The batch's images in the stored layout (index_select is 10x faster than images[idx] on the CPU).
        index_select returns NCHW even from a channels_last tensor, so select on its NHWC view instead."""
        if self.memory_format == torch.channels_last:
            return self.images.permute(0, 2, 3, 1).index_select(0, idx).permute(0, 3, 1, 2)
        return self.images.index_select(0, idx)
