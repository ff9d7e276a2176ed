"""Randomness for datasets: different in every DataLoader worker, repeatable under a seed.

PyTorch seeds torch's global generator in each worker with ``base_seed + worker_id``, with
``base_seed`` drawn from the main process's generator when the iterator starts; so
``torch.manual_seed`` fixes every worker's seed and each epoch gets new ones. Datasets take
their randomness from :func:`item_rng`, a numpy Generator seeded by one draw from that
per-worker torch generator, never from numpy's global state (which forked workers would
all inherit: identical "random" pairs in every worker).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed Python's and numpy's global RNGs from the worker's torch seed.

    Covers code that still uses ``np.random``/``random`` (third-party augmentation); the
    datasets here do not need it.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def item_rng() -> np.random.Generator:
    """A fresh numpy Generator for one item, seeded from torch's (per-worker) generator."""
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
    return np.random.default_rng(seed)
