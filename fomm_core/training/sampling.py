"""Reproducible, resumable data order: everything random is a function of (seed, epoch, index).

Each epoch's order comes from ``DistributedSampler`` seeded with ``seed + epoch`` (also for a
single process), and each item's augmentation/frame choice from a torch seed derived from
``(seed, epoch, index)``. A run resumed in the middle of an epoch therefore skips exactly the
batches already seen and draws exactly the same items as an uninterrupted run, whatever the
number of DataLoader workers.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, well mixed (nearby inputs give unrelated seeds)."""
    digest = hashlib.blake2b(",".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class SeededItems(Dataset):
    """Wraps a dataset so item ``i`` of epoch ``e`` always draws the same randomness.

    The base dataset takes its randomness from torch's global generator (``item_rng``);
    the draw happens inside ``fork_rng`` so the caller's generator is left untouched.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        # In shared memory: persistent DataLoader workers hold their own copy of this object,
        # and must still see the epoch the main process sets.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, idx: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, self.epoch, idx))
            return self.dataset[idx]


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start part-way through an epoch (``skip`` samples)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)
