"""Torch datasets over the shards: training frame pairs and whole clips for evaluation."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import FommError
from .augment import AugmentConfig, augment_pair
from .seeding import item_rng
from .shards import DEFAULT_MAX_OPEN_SHARDS, ClipEntry, ClipSeq, ShardStore

GT_KEYS = ("gt_landmarks", "gt_mouth_open", "gt_blink", "gt_pose")


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) to contiguous float32 (..., 3, H, W) in [0, 1].

    Single-threaded numpy, one contiguous plane at a time: torch's intra-op threads cost
    more than they save on frame-sized tensors, especially on a busy machine.
    """
    frames = np.asarray(frames)
    out = np.empty(frames.shape[:-3] + (frames.shape[-1],) + frames.shape[-3:-1], np.float32)
    for c in range(frames.shape[-1]):
        np.divide(frames[..., c], np.float32(255.0), out=out[..., c, :, :], dtype=np.float32)
    return torch.from_numpy(out)


def to_chw_uint8(frame: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) to a contiguous uint8 (3, H, W) tensor (a quarter of the float bytes)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(frame).transpose(2, 0, 1)))


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (any shape, e.g. a collated (B, 3, H, W) batch, on any device) to float32
    in [0, 1], exactly as the dataset's float items. Use after ``as_float=False`` items have
    crossed the DataLoader's worker queue (or been moved to the GPU) at a quarter of the size.
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 frames, got {frames.dtype}")
    return frames.to(torch.float32).div_(255.0)


def resize_frames(frames: torch.Tensor, size: int | None) -> torch.Tensor:
    """Float (B, 3, H, W) frames to ``size`` x ``size`` (antialiased), as the model was trained.

    Training and evaluation share this so a model trained on downscaled frames is scored on
    exactly the frames it learnt from. ``None`` or the current size returns the input.
    """
    if size is None or (frames.shape[-2] == size and frames.shape[-1] == size):
        return frames
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def _store(source: str | os.PathLike | ShardStore, max_open_shards: int = DEFAULT_MAX_OPEN_SHARDS) -> ShardStore:
    return source if isinstance(source, ShardStore) else ShardStore(source, max_open_shards)


class FramePairDataset(Dataset):
    """Two distinct random frames of one clip, as FOMM trains.

    With ``id_sampling`` (FOMM's default for VoxCeleb) an epoch has one item per identity:
    item ``i`` picks a random clip of the ``i``-th person, so people with many clips do not
    dominate. Frames are drawn sorted (source before driving); the time flip swaps them.
    Items: ``{"source", "driving"}`` float32 (3, H, W) in [0, 1], ``"clip_id"``, and
    ``"frames"`` = (source frame, driving frame). With ``as_float=False`` the frames stay
    uint8 (3, H, W): 4x fewer bytes through DataLoader worker queues and to the GPU; convert
    batches with :func:`to_float`. Colour jitter needs float frames, so it is refused then.
    """

    def __init__(self, root: str | os.PathLike | ShardStore, partition: str = "train",
                 augment: AugmentConfig | None = None, id_sampling: bool = True,
                 as_float: bool = True, max_open_shards: int = DEFAULT_MAX_OPEN_SHARDS):
        if not as_float and augment is not None and augment.jitter > 0 and any(
                v > 0 for v in (augment.brightness, augment.contrast, augment.saturation, augment.hue)):
            raise ValueError("colour jitter needs float frames: use as_float=True or AugmentConfig(jitter=0)")
        self.store = _store(root, max_open_shards)
        self.partition = partition
        self.augment = augment
        self.id_sampling = id_sampling
        self.as_float = as_float
        self._group_by_person()

    def _group_by_person(self) -> None:
        """People and their clips, as the index stores them (nothing computed over all rows).

        ``_by_person[_person_start[p]:_person_start[p + 1]]`` are person ``p``'s clips in index
        order; people are sorted by id. Only ``_person_start`` (one number per person) is held
        in memory; clip rows are read from the index when an item needs them.
        """
        groups = self.store.index.pair_groups(self.partition)
        if not len(groups.rows):
            raise FommError(f"{self.store.root}: no clips with 2+ frames in partition {self.partition!r}")
        self.people = groups.people
        self._by_person = groups.rows
        self._person_start = groups.starts
        self._pairable = groups.pairable
        self.clips: Sequence[ClipEntry] = ClipSeq(self.store.index, groups.pairable)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("clips", "people", "_by_person", "_person_start", "_pairable"):  # rebuilt from the index
            state.pop(key)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._group_by_person()

    def __len__(self) -> int:
        return len(self.people) if self.id_sampling else len(self.clips)

    def __getitem__(self, idx: int) -> dict:
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        rng = item_rng()
        index = self.store.index
        if self.id_sampling:
            first, end = int(self._person_start[idx]), int(self._person_start[idx + 1])
            row = int(self._by_person[first + int(rng.integers(end - first))])
        else:
            row = int(self._pairable[idx])
        num_frames = int(index.num_frames[row])
        i, j = sorted(int(f) for f in rng.choice(num_frames, size=2, replace=False))
        pair = self.store.read_row_frames(row, [i, j])
        clip_id = index.clip_id(row)
        convert = to_tensor if self.as_float else to_chw_uint8
        source, driving = convert(pair[0]), convert(pair[1])
        if self.augment is not None:
            source, driving, swapped = augment_pair(source, driving, self.augment, rng)
            if swapped:
                i, j = j, i
        return {"source": source, "driving": driving, "clip_id": clip_id, "frames": (i, j)}


class ClipFramesDataset(Dataset):
    """Whole clips in index order, for evaluation.

    Item: ``{"clip_id", "frames": float32 (T, 3, H, W)}`` plus the ``gt_*`` arrays when the
    clip has synthetic ground truth, and ``logmel``/``audio`` with ``with_audio``. For long
    clips use :meth:`iter_clip_frames`, which holds one batch at a time. ``frame_size``
    resizes frames (see :func:`resize_frames`); ground-truth landmarks stay in shard pixels.
    """

    def __init__(self, root: str | os.PathLike | ShardStore, partition: str | None = "test",
                 with_audio: bool = False, frame_size: int | None = None,
                 max_open_shards: int = DEFAULT_MAX_OPEN_SHARDS):
        self.store = _store(root, max_open_shards)
        self.clips = self.store.select(partition)
        self.with_audio = with_audio
        self.frame_size = frame_size

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, idx: int) -> dict:
        clip = self.clips[idx]
        frames = torch.cat([resize_frames(to_tensor(b), self.frame_size)
                            for b in self.store.iter_frames(clip, batch=64)])
        item: dict = {"clip_id": clip.clip_id, "frames": frames}
        if clip.has_groundtruth or self.with_audio:
            features = self.store.load_features(clip)
            if clip.has_groundtruth:
                for key in GT_KEYS:
                    item[key] = torch.from_numpy(features[key])
            if self.with_audio:
                item["logmel"] = torch.from_numpy(features["logmel"])
                item["audio"] = torch.from_numpy(features["audio"])
        return item

    def iter_clip_frames(self, clip: ClipEntry | str, batch: int = 32) -> Iterator[torch.Tensor]:
        """A clip's frames in order, float32 (B, 3, H, W) batches, reading as it goes."""
        for frames in self.store.iter_frames(clip, batch=batch):
            yield resize_frames(to_tensor(frames), self.frame_size)


class DatasetRepeater(Dataset):
    """``num_repeats`` passes over a dataset per epoch (FOMM: fewer, longer epochs)."""

    def __init__(self, dataset: Dataset, num_repeats: int = 100):
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be at least 1, got {num_repeats}")
        self.dataset = dataset
        self.num_repeats = num_repeats

    def __len__(self) -> int:
        return self.num_repeats * len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, idx: int):
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        return self.dataset[idx % len(self.dataset)]  # type: ignore[arg-type]
