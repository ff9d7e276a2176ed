"""The shard index and a random-access frame reader over the shard files.

Memory does not grow with the data: the index is read column by column with ``pread``
(:mod:`fomm_core.clip_index`), clips become :class:`ClipEntry` objects only when asked for, and
at most ``max_open_shards`` shard files are open per process (least recently used closed
first), so VoxCeleb2's ~30k-160k shards never exhaust descriptors. Reading a frame costs two
``pread`` calls on a cached descriptor (:mod:`fomm_core.shard_file`). OpenCV is imported at the
first decode, so a training process whose DataLoader workers decode never loads it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, Sequence, overload

import numpy as np

from ..clip_index import INDEX, ClipEntry, ClipIndex, Column
from ..errors import FommError
from ..shard_file import ShardFile

__all__ = ["ClipEntry", "ClipSeq", "DEFAULT_MAX_OPEN_SHARDS", "ShardStore", "decode_image"]

# 64 descriptors per process (times DataLoader workers and ranks) stays far below the usual
# `ulimit -n` of 1024; a shard opens in ~20 us, so a miss costs little next to two decodes.
DEFAULT_MAX_OPEN_SHARDS = 64


def decode_image(data: bytes | memoryview | np.ndarray) -> np.ndarray:
    """JPEG/PNG/WebP bytes to an RGB uint8 (H, W, 3) array."""
    import cv2  # here, not at import: ~16 MB that a process which never decodes does not need

    buf = np.frombuffer(data, dtype=np.uint8)
    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)
    if rgb is not None:
        img = cv2.imdecode(buf, rgb)
    else:  # older OpenCV
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is not None:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img is None:
        raise FommError("a shard image could not be decoded; re-run `dvc repro shard`")
    return img


class ClipSeq(Sequence[ClipEntry]):
    """Clips at some rows of the index, as a sequence; each item is built when accessed."""

    def __init__(self, index: ClipIndex, rows: range | Column | np.ndarray):
        self.index = index
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, k: int) -> ClipEntry: ...

    @overload
    def __getitem__(self, k: slice) -> "ClipSeq": ...

    def __getitem__(self, k):
        if isinstance(k, slice):
            return ClipSeq(self.index, self.rows[k])
        return self.index.entry(int(self.rows[k]))

    def __iter__(self) -> Iterator[ClipEntry]:
        for row in self.rows:
            yield self.index.entry(int(row))

    def __repr__(self) -> str:
        return f"ClipSeq({len(self)} clips of {self.index.root})"


class ShardStore:
    """``index.parquet`` plus random access to frames, for one shard folder."""

    def __init__(self, root: str | os.PathLike, max_open_shards: int = DEFAULT_MAX_OPEN_SHARDS):
        if max_open_shards < 1:
            raise ValueError(f"max_open_shards must be at least 1, got {max_open_shards}")
        self.root = Path(root)
        self.index = ClipIndex.open(self.root)
        self.max_open_shards = int(max_open_shards)
        self.frames_read = 0  # instrumentation: encoded frames read by this process
        self.shards_opened = 0  # instrumentation: shard files opened by this process
        self._open: OrderedDict[str, ShardFile] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # descriptors never travel to another process
        return state

    @property
    def clips(self) -> ClipSeq:
        """Every clip, in index order."""
        return ClipSeq(self.index, self.index.partition_rows(None))

    def select(self, partition: str | None = None) -> ClipSeq:
        return ClipSeq(self.index, self.index.partition_rows(partition))

    def clip(self, clip_id: str) -> ClipEntry:
        row = self.index.find(clip_id)
        if row is None:
            raise FommError(f"clip {clip_id!r} is not in {self.root / INDEX}")
        return self.index.entry(row)

    def _entry(self, clip: ClipEntry | str) -> ClipEntry:
        return self.clip(clip) if isinstance(clip, str) else clip

    def _shard(self, rel: str) -> ShardFile:
        """The open shard ``rel``; opens it, closing the least recently used one beyond the cap."""
        if os.getpid() != self._pid:  # a forked child: its copies of the parent's descriptors
            for shard in self._open.values():
                shard.close()
            self._open = OrderedDict()
            self._pid = os.getpid()
        shard = self._open.get(rel)
        if shard is not None:
            self._open.move_to_end(rel)
            return shard
        shard = ShardFile(self.root / rel, label=str(self.root / rel))
        self.shards_opened += 1
        self._open[rel] = shard
        while len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)[1].close()
        return shard

    @property
    def open_shards(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Close every open shard (they reopen on the next read)."""
        while self._open:
            self._open.popitem()[1].close()

    @staticmethod
    def _frame_rows(start: int, count: int, frames: Sequence[int], clip_id: Callable[[], str]) -> list[int]:
        """Shard rows of a clip's ``frames`` (checked); ``clip_id`` is looked up only for the error."""
        rows = []
        for frame in frames:
            frame = int(frame)
            if not 0 <= frame < count:
                raise IndexError(f"frame {frame} outside clip {clip_id()} ({count} frames)")
            rows.append(start + frame)
        return rows

    def _read(self, shard: str, rows: list[int]) -> list[bytes]:
        images = self._shard(shard).read(rows)
        self.frames_read += len(images)
        return images

    def read_images(self, clip: ClipEntry | str, frames: Sequence[int]) -> list[bytes]:
        """Encoded image bytes of ``frames`` of a clip."""
        entry = self._entry(clip)
        return self._read(entry.shard, self._frame_rows(entry.row_start, entry.num_frames, frames,
                                                        lambda: entry.clip_id))

    def read_frames(self, clip: ClipEntry | str, frames: Sequence[int]) -> list[np.ndarray]:
        """RGB uint8 (H, W, 3) arrays of the given frames; only those frames are read."""
        return [decode_image(buf) for buf in self.read_images(clip, frames)]

    def read_row_frames(self, row: int, frames: Sequence[int]) -> list[np.ndarray]:
        """:meth:`read_frames` by index row, without building a :class:`ClipEntry` (the hot path)."""
        index = self.index
        rows = self._frame_rows(int(index.row_start[row]), int(index.num_frames[row]), frames,
                                lambda: index.clip_id(row))
        return [decode_image(buf) for buf in self._read(index.shard(row), rows)]

    def iter_frames(self, clip: ClipEntry | str, batch: int = 32) -> Iterator[np.ndarray]:
        """A clip's frames in order as (B, H, W, 3) uint8 arrays, one read per batch."""
        entry = self._entry(clip)
        for first in range(0, entry.num_frames, batch):
            count = min(batch, entry.num_frames - first)
            images = self._shard(entry.shard).read_span(entry.row_start + first, count)
            self.frames_read += len(images)
            yield np.stack([decode_image(buf) for buf in images])

    def load_features(self, clip: ClipEntry | str) -> dict[str, np.ndarray]:
        """The clip's NPZ (audio, log-mel, ground truth when present) as a dict of arrays."""
        entry = self._entry(clip)
        path = self.root / entry.features
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except FileNotFoundError:
            raise FommError(f"{path}: features of clip {entry.clip_id} missing; re-run `dvc repro shard`") from None
