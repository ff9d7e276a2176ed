"""Bounded-size Parquet shards written row group by row group.

A clip's encoded frames are first spilled to an unnamed temporary file (memory stays at one
row group however long the clip), so its exact size is known before it is placed: a clip
never spans shards, and a shard is closed before a clip that would push it over
``max_bytes``. Only a single clip larger than the limit gets a shard of its own that is
over it. Each clip starts a new row group, so a frame's row group is found by arithmetic
and random access reads row groups of one clip only.
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

SHARD_SCHEMA = pa.schema([("clip_id", pa.string()), ("frame", pa.int32()), ("image", pa.binary())])
SHARDS_SUBDIR = "shards"
# Parquet bytes beyond the images themselves: page headers and footer entries per row
# group, and the schema/footer once per file. Generous, so the size bound holds.
ROW_GROUP_OVERHEAD = 1024
FILE_OVERHEAD = 8192
_LEN = struct.Struct("<I")


def shard_name(number: int) -> str:
    return f"{SHARDS_SUBDIR}/shard-{number:05d}.parquet"


class SpilledClip:
    """Encoded frames of one clip, buffered on disk in order."""

    def __init__(self, tmp_dir: Path | None = None):
        self._file: BinaryIO = tempfile.TemporaryFile(dir=tmp_dir)
        self.num_frames = 0
        self.nbytes = 0

    def add(self, image: bytes) -> None:
        self._file.write(_LEN.pack(len(image)))
        self._file.write(image)
        self.num_frames += 1
        self.nbytes += len(image)

    def chunks(self, size: int) -> Iterator[list[bytes]]:
        self._file.flush()
        self._file.seek(0)
        chunk: list[bytes] = []
        for _ in range(self.num_frames):
            (length,) = _LEN.unpack(self._file.read(_LEN.size))
            chunk.append(self._file.read(length))
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SpilledClip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Placement:
    """Where a clip's frames went: rows ``[row_start, row_end)`` of ``shard`` (relative path)."""

    shard: str
    row_start: int
    row_end: int


class ShardWriter:
    """Appends clips to ``out_dir/shards/shard-NNNNN.parquet`` files of bounded size."""

    def __init__(self, out_dir: Path, max_bytes: int, row_group_frames: int):
        self.out_dir = Path(out_dir)
        self.max_bytes = int(max_bytes)
        self.row_group_frames = int(row_group_frames)
        self.shards: list[str] = []
        self.total_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._sink: BinaryIO | None = None
        self._rows = 0
        self._row_groups = 0
        (self.out_dir / SHARDS_SUBDIR).mkdir(parents=True, exist_ok=True)

    def _predicted_size(self, clip: SpilledClip) -> int:
        groups = -(-clip.num_frames // self.row_group_frames)
        current = self._sink.tell() if self._sink is not None else 0
        return (current + clip.nbytes + FILE_OVERHEAD
                + (self._row_groups + groups) * ROW_GROUP_OVERHEAD)

    def _open(self) -> None:
        name = shard_name(len(self.shards))
        self._sink = open(self.out_dir / name, "wb")
        self._writer = pq.ParquetWriter(
            self._sink, SHARD_SCHEMA,
            compression={"clip_id": "zstd", "frame": "zstd", "image": "none"},
            use_dictionary=["clip_id"],
            write_statistics=["clip_id", "frame"],
        )
        self.shards.append(name)
        self._rows = 0
        self._row_groups = 0

    def close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._sink is not None
        self._sink.close()
        self.total_bytes += (self.out_dir / self.shards[-1]).stat().st_size
        self._writer = None
        self._sink = None

    def add_clip(self, clip_id: str, clip: SpilledClip) -> Placement:
        if self._writer is not None and self._rows > 0 and self._predicted_size(clip) > self.max_bytes:
            self.close_shard()
        if self._writer is None:
            self._open()
        assert self._writer is not None
        start = self._rows
        frame = 0
        for images in clip.chunks(self.row_group_frames):
            n = len(images)
            table = pa.Table.from_arrays(
                [pa.array([clip_id] * n, pa.string()),
                 pa.array(range(frame, frame + n), pa.int32()),
                 pa.array(images, pa.binary())],
                schema=SHARD_SCHEMA,
            )
            self._writer.write_table(table, row_group_size=self.row_group_frames)
            frame += n
            self._row_groups += 1
        self._rows += frame
        return Placement(self.shards[-1], start, self._rows)

    def close(self) -> None:
        self.close_shard()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close_shard()
