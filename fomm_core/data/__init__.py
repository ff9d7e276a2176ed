"""Training and evaluation data from ``fomm shard`` output (torch datasets, frame reader)."""

from .augment import AugmentConfig, augment_pair
from .datasets import (
    ClipFramesDataset, DatasetRepeater, FramePairDataset, resize_frames, to_chw_uint8, to_float, to_tensor,
)
from .seeding import item_rng, seed_worker
from .shards import DEFAULT_MAX_OPEN_SHARDS, ClipEntry, ClipSeq, ShardStore, decode_image

__all__ = [
    "AugmentConfig",
    "ClipEntry",
    "ClipFramesDataset",
    "ClipSeq",
    "DEFAULT_MAX_OPEN_SHARDS",
    "DatasetRepeater",
    "FramePairDataset",
    "ShardStore",
    "augment_pair",
    "decode_image",
    "item_rng",
    "resize_frames",
    "seed_worker",
    "to_chw_uint8",
    "to_float",
    "to_tensor",
]
