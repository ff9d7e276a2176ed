"""The shard file: encoded frames back to back, then their byte offsets and the clips they hold.

Layout (all integers little-endian uint64)::

    MAGIC                                   8 bytes
    frame 0 | frame 1 | ... | frame n-1     encoded images (JPEG/PNG/WebP bytes)
    offsets[0..n]                           absolute byte offset of each frame; offsets[n] = end
    clips JSON                              {"format", "key", "clips": [index rows]}
    n | offsets_pos | clips_pos | MAGIC     32-byte tail

Why not Parquet: random pairs over VoxCeleb touch a different shard for almost every item, so
opening a shard must be cheap. A Parquet footer of a 256 MB shard (800 row groups) takes ~1.6 ms
to parse on every open; this tail is one 32-byte read, and a frame is two more ``pread`` calls
(its offsets, its bytes) with no file position, so a descriptor is safe to share with forked
DataLoader workers. The clips JSON makes each shard self-describing: the index is rebuilt from
the shards alone (``fomm shard --merge``).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from .errors import FommError

MAGIC = b"FOMMSHD1"
FORMAT_VERSION = 1
SUFFIX = ".frames"
_TAIL = struct.Struct("<QQQ8s")
_OFFSET = np.dtype("<u8")
_REBUILD = "re-run `dvc repro shard` (or `fomm shard`)"


class ShardFile:
    """An open shard: ``read(rows)`` returns the encoded frames at those row numbers."""

    def __init__(self, path: str | os.PathLike, label: str | None = None):
        self.path = Path(path)
        self.label = label or str(self.path)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FommError(f"shard {self.label} is missing; the index lists it, so the shard folder "
                            f"is incomplete: {_REBUILD}") from None
        except OSError as exc:
            raise FommError(f"shard {self.label}: cannot open ({exc.strerror}); {_REBUILD}") from None
        try:
            size = os.fstat(self.fd).st_size
            tail = os.pread(self.fd, _TAIL.size, max(0, size - _TAIL.size)) if size >= _TAIL.size else b""
            if len(tail) != _TAIL.size or tail[-8:] != MAGIC:
                raise self.corrupt("no shard tail (truncated or not a shard file)")
            self.num_frames, self.offsets_pos, self.clips_pos, _ = _TAIL.unpack(tail)
            if not (len(MAGIC) <= self.offsets_pos
                    and self.offsets_pos + 8 * (self.num_frames + 1) == self.clips_pos <= size - _TAIL.size):
                raise self.corrupt("inconsistent tail")
            self.size = size
        except BaseException:
            os.close(self.fd)
            raise

    def corrupt(self, what: str) -> FommError:
        return FommError(f"shard {self.label} is corrupt ({what}); {_REBUILD}")

    def _pread(self, length: int, offset: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise self.corrupt(f"short read at byte {offset}")
        return data

    def offsets(self, first: int, last: int) -> np.ndarray:
        """Byte offsets of rows ``first..last`` inclusive (``last`` may be ``num_frames``)."""
        if not 0 <= first <= last <= self.num_frames:
            raise self.corrupt(f"rows {first}..{last} outside its {self.num_frames} frames")
        return np.frombuffer(self._pread(8 * (last - first + 1), self.offsets_pos + 8 * first), _OFFSET)

    def read(self, rows: Sequence[int]) -> list[bytes]:
        """Encoded frames of ``rows`` (any order), with one offsets read for the span they cover."""
        if not len(rows):
            return []
        lo, hi = min(rows), max(rows)
        offsets = self.offsets(lo, hi + 1)
        out = []
        for row in rows:
            start, end = int(offsets[row - lo]), int(offsets[row - lo + 1])
            if not len(MAGIC) <= start <= end <= self.offsets_pos:
                raise self.corrupt(f"bad offsets for row {row}")
            out.append(self._pread(end - start, start))
        return out

    def read_span(self, first: int, count: int) -> list[bytes]:
        """``count`` consecutive frames from row ``first``, in one read of their bytes."""
        if count <= 0:
            return []
        offsets = self.offsets(first, first + count)
        base = int(offsets[0])
        if not len(MAGIC) <= base <= int(offsets[-1]) <= self.offsets_pos:
            raise self.corrupt(f"bad offsets for rows {first}..{first + count - 1}")
        blob = memoryview(self._pread(int(offsets[-1]) - base, base))
        return [bytes(blob[int(a) - base:int(b) - base]) for a, b in zip(offsets[:-1], offsets[1:])]

    def clips(self) -> dict:
        """The clips JSON: ``{"format", "key", "clips": [index rows]}``."""
        raw = self._pread(self.size - _TAIL.size - self.clips_pos, self.clips_pos)
        try:
            meta = json.loads(raw)
        except ValueError:
            raise self.corrupt("unreadable clip table") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or not isinstance(meta.get("clips"), list):
            raise self.corrupt(f"clip table of another format ({str(meta)[:60]!r})")
        return meta

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "ShardFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _copy_range(src: int, dst: int, src_offset: int, dst_offset: int, count: int) -> None:
    copy = getattr(os, "copy_file_range", None)
    while count > 0:
        try:
            if copy is None:
                raise OSError("no copy_file_range")
            done = copy(src, dst, count, src_offset, dst_offset)
        except OSError:  # another filesystem or kernel: copy through user space
            data = os.pread(src, min(count, 1 << 22), src_offset)
            done = os.pwrite(dst, data, dst_offset) if data else 0
        if done <= 0:
            raise FommError(f"copying shard frames stopped short with {count} bytes left")
        src_offset, dst_offset, count = src_offset + done, dst_offset + done, count - done


def read_clip_table(path: str | os.PathLike) -> dict | None:
    """A finished shard's clips JSON, or ``None`` when the file is absent or not a whole shard."""
    try:
        with ShardFile(path) as shard:
            return shard.clips()
    except FommError:
        return None


class ShardFileWriter:
    """Appends frames to an open file and finishes it with offsets, clip table and tail.

    ``sink`` is positioned at ``offsets[-1]`` (a new file after :meth:`start`, or a partial one
    truncated to its last whole clip when resuming). Only whole files are ever renamed to a
    shard's final name, so a reader never sees a shard without its tail.
    """

    def __init__(self, sink: BinaryIO, offsets: list[int] | None = None):
        self.sink = sink
        self.offsets = list(offsets) if offsets else []
        if not self.offsets:
            sink.write(MAGIC)
            self.offsets = [len(MAGIC)]

    @property
    def num_frames(self) -> int:
        return len(self.offsets) - 1

    def add(self, image: bytes) -> None:
        self.sink.write(image)
        self.offsets.append(self.offsets[-1] + len(image))

    def copy_frames(self, source: ShardFile) -> None:
        """Append every frame of ``source`` (copied by the kernel where the filesystem can)."""
        offsets = source.offsets(0, source.num_frames)
        first, last = int(offsets[0]), int(offsets[-1])
        self.sink.flush()
        _copy_range(source.fd, self.sink.fileno(), first, self.offsets[-1], last - first)
        base = self.offsets[-1]
        self.offsets.extend((offsets[1:].astype(np.int64) - first + base).tolist())
        self.sink.seek(self.offsets[-1])

    def finish(self, key: str, clips: list[dict]) -> int:
        """Write the offsets, the clip table and the tail; the file's final size."""
        offsets_pos = self.offsets[-1]
        self.sink.write(np.asarray(self.offsets, dtype=_OFFSET).tobytes())
        clips_pos = offsets_pos + 8 * len(self.offsets)
        table = json.dumps({"format": FORMAT_VERSION, "key": key, "clips": clips},
                           sort_keys=True, separators=(",", ":")).encode()
        self.sink.write(table)
        self.sink.write(_TAIL.pack(self.num_frames, offsets_pos, clips_pos, MAGIC))
        return clips_pos + len(table) + _TAIL.size
