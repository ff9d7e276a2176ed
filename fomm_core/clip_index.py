"""The shard index as fixed-width columns read with ``pread``: no per-clip memory in any process.

``index.parquet`` (one row per clip, the contract) is what people and tools read. Beside it
``fomm shard`` writes ``index.cols`` (built by :mod:`fomm_core.clip_index_build`): the same rows
as little-endian columns, strings as offsets + bytes, repeated strings as codes into sorted
dictionaries, plus what readers would otherwise compute over every row: each partition's rows,
the clips ``FramePairDataset`` samples (2+ frames) grouped by person, and the clip ids' sort
order. A clip's fields are a few ``pread`` calls (~1 us each, next to ~1.5 ms to decode a pair).

Why not a memory map: on this kernel a fault maps a whole large folio of the page cache (~2 MB),
so ~100 random rows put the entire 92 MB file of VoxCeleb2's 1.1M clips into every process's
RSS. Pages read with ``pread`` stay in the shared page cache and count against no process, and
the descriptor is safe to share with forked DataLoader workers (no file position). Nothing here
imports pyarrow (~40 MB per process); an index without a matching ``index.cols`` (older shards,
hand-made or edited tables) is encoded in memory by the build module instead.

Layout: ``MAGIC`` (8 bytes), header length (uint64), JSON header ``{"format", "rows",
"parquet_sha256", "features", "partitions", "columns": {name: [dtype, offset, count]}}``, then
the columns, each 64-byte aligned; offsets count from the first byte after the padded header.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from .digest import sha256_of_file
from .errors import FommError

INDEX = "index.parquet"
COMPACT_INDEX = "index.cols"
LEGACY_COMPACT_INDEX = "index.arrow"  # what fomm shard wrote before index.cols; never read
FEATURES_SUBDIR = "features"
MAGIC = b"FOMMIDX1"
FORMAT = "fomm-index/1"
ALIGN = 64
_HEAD = struct.Struct("<8sQ")
_MAX_HEADER = 64 << 20
_ITEMS_PER_BLOCK = 1 << 16  # iteration reads this many items at a time


@dataclass(frozen=True)
class ClipEntry:
    """One row of ``index.parquet``: where a clip's frames and features are."""

    clip_id: str
    person_id: str
    video_id: str
    partition: str
    shard: str
    row_start: int
    row_end: int
    num_frames: int
    fps: float
    image_format: str
    height: int
    width: int
    features: str
    has_groundtruth: bool


def features_path(partition: str, clip_id: str) -> str:
    """Where ``fomm shard`` puts a clip's features NPZ, relative to the shard folder."""
    return f"{FEATURES_SUBDIR}/{partition}/{clip_id}.npz"


def unsafe_relative_path(rel: str) -> bool:
    """True when ``rel`` could leave the shard folder (absolute, ``..``, backslashes, empty)."""
    path = PurePosixPath(rel)
    return not rel or path.is_absolute() or ".." in path.parts or "\\" in rel


def aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


# ------------------------------------------------------------------ where the bytes come from
class FileSource:
    """``pread`` on one descriptor; pickles as the path and reopens the same file (or refuses)."""

    def __init__(self, path: str | os.PathLike, identity: tuple[int, int, int] | None = None):
        self.path = str(path)
        self.fd = -1
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.size = st.st_size
        self.identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        if identity is not None and tuple(identity) != self.identity:
            self.close()
            raise FommError(f"{self.path} changed while in use (a new `fomm shard`?); start the run again")

    def read(self, offset: int, size: int) -> bytes:
        chunks = []
        while size > 0:
            chunk = os.pread(self.fd, min(size, 1 << 30), offset)
            if not chunk:
                raise FommError(f"{self.path}: truncated; re-run `dvc repro shard`")
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()

    def __reduce__(self):
        return FileSource, (self.path, self.identity)


class BytesSource:
    """The same layout held in memory (an index encoded on the fly)."""

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size]


Source = FileSource | BytesSource


# ------------------------------------------------------------------ columns
class Column:
    """A fixed-width column; items are read when asked for and not kept.

    Supports what the readers use of a numpy array: ``len``, ``col[i]`` (a numpy scalar),
    ``col[a:b]`` (a view, still unread), iteration and ``np.asarray(col)`` (reads it all).
    """

    __slots__ = ("source", "dtype", "offset", "count")

    def __init__(self, source: Source, dtype: np.dtype, offset: int, count: int):
        self.source, self.dtype, self.offset, self.count = source, dtype, offset, count

    def __len__(self) -> int:
        return self.count

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.count if stop is None else min(stop, self.count)
        if stop <= start:
            return np.zeros(0, self.dtype)
        size = self.dtype.itemsize
        return np.frombuffer(self.source.read(self.offset + start * size, (stop - start) * size), self.dtype)

    def read_bytes(self, start: int, stop: int) -> bytes:
        """Raw bytes ``[start, stop)`` of a uint8 column (string data)."""
        return self.source.read(self.offset + start, stop - start)

    def __getitem__(self, k):
        if isinstance(k, slice):
            start, stop, step = k.indices(self.count)
            if step != 1:
                return self.read()[k]
            size = self.dtype.itemsize
            return Column(self.source, self.dtype, self.offset + start * size, max(0, stop - start))
        k = int(k)
        if k < 0:
            k += self.count
        if not 0 <= k < self.count:
            raise IndexError(f"row {k} outside 0..{self.count - 1}")
        return self.read(k, k + 1)[0]

    def __iter__(self) -> Iterator:
        for first in range(0, self.count, _ITEMS_PER_BLOCK):
            yield from self.read(first, first + _ITEMS_PER_BLOCK)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self.read()
        return values if dtype is None else values.astype(dtype)


class Strings:
    """A string column: ``offsets`` (n + 1) into UTF-8 ``data``."""

    def __init__(self, offsets: Column, data: Column):
        self.offsets, self.data = offsets, data

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, k: int) -> str:
        k = int(k)
        if not 0 <= k < len(self):
            raise IndexError(f"string {k} outside 0..{len(self) - 1}")
        start, stop = (int(v) for v in self.offsets.read(k, k + 2))
        return self.data.read_bytes(start, stop).decode()

    def to_list(self) -> list[str]:
        """Every string (for small dictionaries only)."""
        offsets, data = self.offsets.read(), self.data.read_bytes(0, len(self.data))
        return [data[int(a):int(b)].decode() for a, b in zip(offsets[:-1], offsets[1:])]


@dataclass(frozen=True)
class PairGroups:
    """A partition's clips with 2+ frames, grouped by person (people sorted by id).

    ``rows[starts[p]:starts[p + 1]]`` are the index rows of ``people[p]``'s clips, in index
    order; ``pairable`` holds the same rows in index order.
    """

    people: list[str]
    starts: np.ndarray
    rows: Column
    pairable: Column


# ------------------------------------------------------------------ the index
class ClipIndex:
    """The clips of a shard folder as columns; :meth:`entry` builds one :class:`ClipEntry`."""

    def __init__(self, root: str | os.PathLike, source: Source, on_disk: bool):
        self.root = Path(root)
        self.on_disk = on_disk
        self._set_source(source)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "ClipIndex":
        root = Path(root)
        index = root / INDEX
        if not index.is_file():
            raise FommError(f"{index}: shard index not found; run fomm shard first")
        source = cls._published(root / COMPACT_INDEX, sha256_of_file(index))
        if source is not None:
            return cls(root, source, on_disk=True)
        from .clip_index_build import encode_parquet  # pyarrow, only for indexes without index.cols

        return cls(root, BytesSource(encode_parquet(index)), on_disk=False)

    @staticmethod
    def _published(path: Path, parquet_sha: str) -> FileSource | None:
        """``index.cols`` when it is the one ``index.parquet`` was published with (else None)."""
        try:
            source = FileSource(path)
        except OSError:
            return None
        try:
            meta, _ = read_header(source, str(path))
        except FommError:
            meta = {}
        if meta.get("parquet_sha256") != parquet_sha:
            source.close()
            return None
        return source

    def _set_source(self, source: Source) -> None:
        where = str(self.root / (COMPACT_INDEX if self.on_disk else INDEX))
        meta, columns = read_header(source, where)
        self.source = source
        self._columns = columns
        self._rows = int(meta["rows"])
        self.partitions: list[str] = list(meta["partitions"])
        self.has_features_column = meta["features"] == "column"

        def strings(name: str) -> Strings:
            return Strings(columns[f"{name}.offsets"], columns[f"{name}.data"])

        self.clip_ids = strings("clip_id")
        self.person_codes = columns["person_id.codes"]
        self.persons = strings("person_id.dict")
        self.video_codes = columns["video_id.codes"]
        self.videos = strings("video_id.dict")
        self.shard_codes = columns["shard.codes"]
        self.shards = strings("shard.dict")
        self.partition_codes = columns["partition.codes"]
        self.image_format_codes = columns["image_format.codes"]
        self.image_formats = strings("image_format.dict").to_list()
        self.row_start = columns["row_start"]
        self.num_frames = columns["num_frames"]
        self.fps = columns["fps"]
        self.height = columns["height"]
        self.width = columns["width"]
        self.has_groundtruth = columns["has_groundtruth"]
        self.features = strings("features") if self.has_features_column else None
        self._sorted = columns["clip_id.sorted"]

    def __getstate__(self) -> dict:
        # On disk it travels as its path: the other process reads the same page cache.
        return {"root": self.root, "on_disk": self.on_disk, "source": self.source}

    def __setstate__(self, state: dict) -> None:
        self.root, self.on_disk = state["root"], state["on_disk"]
        self._set_source(state["source"])

    def __len__(self) -> int:
        return self._rows

    def clip_id(self, row: int) -> str:
        return self.clip_ids[row]

    def shard(self, row: int) -> str:
        return self.shards[int(self.shard_codes[row])]

    def partition_rows(self, partition: str | None) -> range | Column:
        """Row numbers of one partition's clips, or of all clips, in index order (read lazily)."""
        if partition is None:
            return range(len(self))
        if partition not in self.partitions:
            return self._columns["empty"]
        return self._columns[f"part.{self.partitions.index(partition)}.rows"]

    def pair_groups(self, partition: str) -> PairGroups:
        """The clips ``FramePairDataset`` samples from, grouped by person (see :class:`PairGroups`)."""
        if partition not in self.partitions:
            empty = self._columns["empty"]
            return PairGroups([], np.zeros(1, np.int64), empty, empty)
        part = f"part.{self.partitions.index(partition)}"
        people = self._columns[f"{part}.people"].read()
        return PairGroups(people=[self.persons[int(code)] for code in people],
                          starts=self._columns[f"{part}.starts"].read().astype(np.int64),
                          rows=self._columns[f"{part}.by_person"], pairable=self._columns[f"{part}.pairable"])

    def entry(self, row: int) -> ClipEntry:
        row = int(row)
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} outside 0..{len(self) - 1}")
        clip_id = self.clip_id(row)
        partition = self.partitions[int(self.partition_codes[row])]
        start, frames = int(self.row_start[row]), int(self.num_frames[row])
        return ClipEntry(
            clip_id=clip_id, person_id=self.persons[int(self.person_codes[row])],
            video_id=self.videos[int(self.video_codes[row])],
            partition=partition, shard=self.shard(row), row_start=start, row_end=start + frames,
            num_frames=frames, fps=float(self.fps[row]),
            image_format=self.image_formats[int(self.image_format_codes[row])],
            height=int(self.height[row]), width=int(self.width[row]),
            features=self.features[row] if self.features is not None else features_path(partition, clip_id),
            has_groundtruth=bool(self.has_groundtruth[row]),
        )

    def find(self, clip_id: str) -> int | None:
        """Row number of ``clip_id``: binary search over the stored sort order (~20 steps)."""
        lo, hi = 0, len(self._sorted)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.clip_ids[int(self._sorted[mid])] < clip_id:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self._sorted):
            row = int(self._sorted[lo])
            if self.clip_ids[row] == clip_id:
                return row
        return None


class _Columns(dict):
    """Columns by name; a name the file lacks is a one-line error, not a KeyError."""

    def __init__(self, where: str):
        super().__init__()
        self.where = where

    def __missing__(self, name: str) -> Column:
        raise FommError(f"{self.where}: column {name} missing; re-run `dvc repro shard`")


def read_header(source: Source, where: str) -> tuple[dict, dict[str, Column]]:
    """The header of an index in ``source`` and its columns, each checked to lie inside it."""

    def bad(what: str) -> FommError:
        return FommError(f"{where}: {what}; re-run `dvc repro shard`")

    head = source.read(0, _HEAD.size)
    if len(head) != _HEAD.size:
        raise bad("too short to be an index")
    magic, length = _HEAD.unpack(head)
    if magic != MAGIC or length > _MAX_HEADER or _HEAD.size + length > source.size:
        raise bad("not an index.cols file")
    try:
        meta = json.loads(source.read(_HEAD.size, length))
        if meta.get("format") != FORMAT:
            raise bad(f"index format {meta.get('format')!r}, this fomm reads {FORMAT!r}")
        data_start = aligned(_HEAD.size + length)
        columns = _Columns(where)
        for name, (dtype, offset, count) in meta["columns"].items():
            dt = np.dtype(dtype)
            if dt.kind not in "uif" or dt.byteorder == ">" or not 0 <= offset or not 0 <= count:
                raise bad(f"column {name} has an unusable layout")
            if data_start + offset + count * dt.itemsize > source.size:
                raise bad(f"column {name} runs past the end of the file")
            columns[name] = Column(source, dt, data_start + offset, int(count))
        if int(meta["rows"]) < 0 or not isinstance(meta["partitions"], list) \
                or meta["features"] not in ("canonical", "column"):
            raise bad("inconsistent header")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise bad(f"unreadable header ({type(exc).__name__})") from None
    return meta, columns
