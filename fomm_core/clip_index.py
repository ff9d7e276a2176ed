"""The shard index as columnar arrays: ~80 bytes per clip, memory-mapped and shared by processes.

``index.parquet`` (one row per clip, the contract) is what people and tools read. Beside it
``fomm shard`` writes ``index.arrow``: the same rows as an uncompressed Arrow IPC file with
repeated strings dictionary-encoded and ``row_end``/``features`` left out (derived), so every
process (DataLoader workers, torchrun ranks) maps the same pages instead of holding its own
copy, and a spawned worker receives a path, not a pickle of the index. ``index.arrow`` records
the SHA-256 of the ``index.parquet`` it was written with; an index without a matching
``index.arrow`` (older shards, hand-made or edited tables) is compacted in memory instead.

At VoxCeleb2's 1.1M clips the mapped index is ~90 MB in total, against ~1.4 GB of Python objects
per process when each row was a dataclass. :class:`ClipEntry` objects are built per access.
"""

from __future__ import annotations

import hashlib
import os
from bisect import bisect_left
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import atomic_path
from .errors import FommError

INDEX = "index.parquet"
COMPACT_INDEX = "index.arrow"
PARQUET_SHA_KEY = b"fomm.index_parquet_sha256"
FEATURES_KEY = b"fomm.features"
FEATURES_SUBDIR = "features"

INDEX_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("person_id", pa.string()), ("video_id", pa.string()),
    ("partition", pa.string()), ("shard", pa.string()), ("row_start", pa.int64()),
    ("row_end", pa.int64()), ("num_frames", pa.int32()), ("fps", pa.float64()),
    ("image_format", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
    ("features", pa.string()), ("has_groundtruth", pa.bool_()),
])
_DICT32 = pa.dictionary(pa.int32(), pa.string())
_DICT8 = pa.dictionary(pa.int8(), pa.string())
COMPACT_TYPES = {
    "clip_id": pa.string(), "person_id": _DICT32, "video_id": _DICT32, "partition": _DICT8,
    "shard": _DICT32, "row_start": pa.int64(), "num_frames": pa.int32(), "fps": pa.float64(),
    "image_format": _DICT8, "height": pa.int32(), "width": pa.int32(), "has_groundtruth": pa.bool_(),
}


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


def _unsafe(rel: str) -> bool:
    path = PurePosixPath(rel)
    return not rel or path.is_absolute() or ".." in path.parts or "\\" in rel


def compact(table: pa.Table, where: str) -> pa.Table:
    """Index rows (``INDEX_SCHEMA`` columns, any order of rows) to the compact columnar form.

    Validates what readers rely on: no nulls, ``row_end == row_start + num_frames``, and paths
    that stay inside the shard folder. ``features`` is dropped when it is the canonical
    ``features/{partition}/{clip_id}.npz`` of every row (schema metadata says which).
    """
    names = [f.name for f in fields(ClipEntry)]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise FommError(f"{where}: missing column(s) {', '.join(missing)}; re-run `dvc repro shard`")

    def bad(what: str) -> FommError:
        return FommError(f"{where}: {what}; re-run `dvc repro shard`")

    columns: dict[str, pa.Array] = {}
    for name in names:
        column = table.column(name).combine_chunks()
        if column.null_count:
            raise bad(f"column {name} has empty values")
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        columns[name] = column
    try:
        for name in ("row_start", "row_end"):
            columns[name] = columns[name].cast(pa.int64())
        for name in ("num_frames", "height", "width"):
            columns[name] = columns[name].cast(pa.int32())
        for name in ("clip_id", "person_id", "video_id", "partition", "shard", "image_format", "features"):
            columns[name] = columns[name].cast(pa.string())
        columns["fps"] = columns["fps"].cast(pa.float64())
        columns["has_groundtruth"] = columns["has_groundtruth"].cast(pa.bool_())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise bad(str(exc)) from None
    ids, partitions = columns["clip_id"], columns["partition"]
    if len(table):
        ends = pc.add(columns["row_start"], columns["num_frames"].cast(pa.int64()))
        if not pc.all(pc.equal(ends, columns["row_end"])).as_py():
            raise bad("row_end != row_start + num_frames")
        if pc.min(columns["row_start"]).as_py() < 0 or pc.min(columns["num_frames"]).as_py() < 0:
            raise bad("negative row numbers")
        for values in (ids, partitions):
            if (pc.any(pc.match_substring(values, "/")).as_py() or pc.any(pc.match_substring(values, "\\")).as_py()
                    or pc.any(pc.starts_with(values, ".")).as_py() or pc.any(pc.equal(values, "")).as_py()):
                raise bad("a clip_id or partition is not a plain name")
    canonical = pc.binary_join_element_wise(
        FEATURES_SUBDIR, partitions, pc.binary_join_element_wise(ids, "npz", "."), "/")
    features = columns["features"]
    keep_features = bool(len(table)) and not pc.all(pc.equal(features, canonical)).as_py()
    out: dict[str, pa.Array] = {}
    try:
        for name, kind in COMPACT_TYPES.items():
            column = columns[name]
            out[name] = column.dictionary_encode().cast(kind) if pa.types.is_dictionary(kind) else column
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # e.g. > 127 partitions
        raise bad(str(exc)) from None
    for rel in out["shard"].dictionary.to_pylist():
        if _unsafe(rel):
            raise bad(f"shard path {rel!r} leaves the shard folder")
    if keep_features:
        for rel in features.to_pylist():
            if _unsafe(rel):
                raise bad(f"features path {rel!r} leaves the shard folder")
        out["features"] = features
    return pa.table(out).replace_schema_metadata({FEATURES_KEY: b"column" if keep_features else b"canonical"})


def _sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().encode()


def write_index(root: str | os.PathLike, rows: pa.Table) -> None:
    """Publish ``index.arrow`` then ``index.parquet`` (each renamed into place; the Parquet last).

    ``rows`` has ``INDEX_SCHEMA``'s columns in the order readers should see the clips. The
    Arrow file records the SHA-256 of the Parquet file it goes with, so any later change to
    ``index.parquet`` (a rebuild, a hand edit) makes readers ignore the stale Arrow file.
    """
    root = Path(root)
    rows = rows.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
    table = compact(rows, str(root / INDEX)).combine_chunks()
    with atomic_path(root / INDEX) as parquet_tmp:
        pq.write_table(rows, parquet_tmp, compression="zstd")
        tagged = table.replace_schema_metadata({**table.schema.metadata, PARQUET_SHA_KEY: _sha256(parquet_tmp)})
        with atomic_path(root / COMPACT_INDEX) as arrow_tmp:
            with pa.OSFile(str(arrow_tmp), "wb") as sink, pa.ipc.new_file(sink, tagged.schema) as writer:
                writer.write_table(tagged, max_chunksize=max(1, len(tagged)))


def _numpy(array: pa.Array) -> np.ndarray:
    """Zero-copy numpy view of a fixed-width Arrow array without nulls.

    (``Array.to_numpy`` would do, but it imports pandas: +50 MB in every process.)
    """
    name = str(array.type)
    dtype = np.dtype({"double": "float64", "float": "float32"}.get(name, name))
    if len(array) == 0 or array.buffers()[1] is None:
        return np.zeros(0, dtype=dtype)
    data = np.frombuffer(array.buffers()[1], dtype=dtype)
    return data[array.offset:array.offset + len(array)]


class ClipIndex:
    """The clips of a shard folder as columns; :meth:`entry` builds one :class:`ClipEntry`."""

    def __init__(self, root: str | os.PathLike, table: pa.Table, mapped: bool):
        self.root = Path(root)
        self.mapped = mapped
        self._set_table(table)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "ClipIndex":
        root = Path(root)
        index = root / INDEX
        if not index.is_file():
            raise FommError(f"{index}: shard index not found; run fomm shard first")
        table = cls._mapped(root / COMPACT_INDEX, _sha256(index))
        if table is not None:
            return cls(root, table, mapped=True)
        try:
            rows = pq.read_table(index)
        except (OSError, pa.ArrowException) as exc:
            raise FommError(f"{index}: not a readable Parquet file ({exc}); re-run `dvc repro shard`") from None
        return cls(root, compact(rows, str(index)), mapped=False)

    @staticmethod
    def _mapped(path: Path, parquet_sha: bytes) -> pa.Table | None:
        """The memory-mapped compact index when it is the one ``index.parquet`` was published with."""
        try:
            table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        except (OSError, pa.ArrowException):
            return None
        if (table.schema.metadata or {}).get(PARQUET_SHA_KEY) != parquet_sha:
            return None
        return table

    def _set_table(self, table: pa.Table) -> None:
        self.table = table
        self.has_features_column = (table.schema.metadata or {}).get(FEATURES_KEY) == b"column"

        def arr(name: str) -> pa.Array:
            column = table.column(name)
            return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()

        self.clip_ids: pa.StringArray = arr("clip_id")
        self._dicts = {n: arr(n) for n in ("person_id", "video_id", "partition", "shard", "image_format")}
        # Zero-copy numpy views of the fixed-width columns (pages of the mapped file).
        self.person_codes = _numpy(self._dicts["person_id"].indices)
        self.partition_codes = _numpy(self._dicts["partition"].indices)
        self.shard_codes = _numpy(self._dicts["shard"].indices)
        self.row_start = _numpy(arr("row_start"))
        self.num_frames = _numpy(arr("num_frames"))
        self.fps = _numpy(arr("fps"))
        self.height = _numpy(arr("height"))
        self.width = _numpy(arr("width"))
        self.has_groundtruth = arr("has_groundtruth")
        self.features = arr("features") if self.has_features_column else None
        self.persons: pa.StringArray = self._dicts["person_id"].dictionary
        self.partitions: list[str] = self._dicts["partition"].dictionary.to_pylist()
        self._order: np.ndarray | None = None  # clip-id sort order, built on the first lookup

    def __getstate__(self) -> dict:
        # A mapped index travels as its path: the other process maps the same pages.
        return {"root": self.root, "mapped": self.mapped, "table": None if self.mapped else self.table}

    def __setstate__(self, state: dict) -> None:
        self.root, self.mapped = state["root"], state["mapped"]
        if state["table"] is not None:
            self._set_table(state["table"])
            return
        reopened = ClipIndex.open(self.root)
        self.mapped = reopened.mapped
        self._set_table(reopened.table)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def clip_id(self, row: int) -> str:
        return self.clip_ids[row].as_py()

    def shard(self, row: int) -> str:
        return self._dicts["shard"].dictionary[int(self.shard_codes[row])].as_py()

    def partition_rows(self, partition: str | None) -> np.ndarray:
        """Row numbers (int64) of one partition's clips, or of all clips, in index order."""
        if partition is None:
            return np.arange(len(self), dtype=np.int64)
        if partition not in self.partitions:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.partition_codes == self.partitions.index(partition))

    def entry(self, row: int) -> ClipEntry:
        row = int(row)
        clip_id = self.clip_id(row)
        partition = self.partitions[int(self.partition_codes[row])]
        start, frames = int(self.row_start[row]), int(self.num_frames[row])
        return ClipEntry(
            clip_id=clip_id,
            person_id=self.persons[int(self.person_codes[row])].as_py(),
            video_id=self._dicts["video_id"][row].as_py(),
            partition=partition, shard=self.shard(row), row_start=start, row_end=start + frames,
            num_frames=frames, fps=float(self.fps[row]), image_format=self._dicts["image_format"][row].as_py(),
            height=int(self.height[row]), width=int(self.width[row]),
            features=self.features[row].as_py() if self.features is not None else features_path(partition, clip_id),
            has_groundtruth=bool(self.has_groundtruth[row].as_py()),
        )

    def find(self, clip_id: str) -> int | None:
        """Row number of ``clip_id`` (binary search over a sort order built once), or ``None``."""
        if self._order is None:
            self._order = _numpy(pc.sort_indices(self.clip_ids)).astype(np.int64 if len(self) >= 2**31 else np.int32)
        order, ids = self._order, self.clip_ids

        class _Sorted:
            def __len__(self) -> int:
                return len(order)

            def __getitem__(self, k: int) -> str:
                return ids[int(order[k])].as_py()

        k = bisect_left(_Sorted(), clip_id)
        if k < len(order) and ids[int(order[k])].as_py() == clip_id:
            return int(order[k])
        return None
